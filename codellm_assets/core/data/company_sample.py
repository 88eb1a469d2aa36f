"""A generated "company" repository: an internal library with distinctive names and the services that use it,
with a dated history - the default repo on which fine-tuning can visibly beat a base pre-trained on public
code, and on which the repo-level benchmark finds cross-file tasks.

The library ``src/quillon/`` (names no public code uses: ``LedgerVault``, ``stamp_quorble``...) is written by
the first commit; each later commit, one day apart, adds a batch of services ``src/services/*.py`` that call
it with the house conventions (``LedgerVault.open(region=...)``, ``vault.stamp_quorble(entry, tariff=...)``,
``courier_mesh.dispatch_parcel(...)``). A time split therefore holds out the newest services, whose lines
need the library defined in older files. Identity, dates and content are fixed by ``seed``: the same seed
gives the same commit shas.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

from codellm_assets.core.data.samples import _DAY, _EPOCH, SampleError, _git

LIBRARY = {
    "src/quillon/__init__.py": '"""quillon: the company\'s internal ledger, tariff and courier library."""\n',
    "src/quillon/ledger_vault.py": '''"""Ledger vaults: where every quorble entry is stamped."""

NORTH_REGION, SOUTH_REGION, HARBOR_REGION = "north", "south", "harbor"
REGIONS = (NORTH_REGION, SOUTH_REGION, HARBOR_REGION)


class LedgerVault:
    def __init__(self, region, strict=True):
        self.region = region
        self.strict = strict
        self.entries = []

    @classmethod
    def open(cls, region, strict=True):
        if region not in REGIONS:
            raise ValueError(f"unknown vault region {region}")
        return cls(region, strict=strict)

    def stamp_quorble(self, entry, tariff=None):
        amount = entry["amount"] * (tariff.rate_for(entry["kind"]) if tariff else 1.0)
        self.entries.append({**entry, "amount": amount, "region": self.region})
        return amount

    def settle_zephyr(self):
        total = sum(e["amount"] for e in self.entries)
        self.entries.clear()
        return round(total, 2)
''',
    "src/quillon/tariff_grid.py": '''"""Tariff grids: the rate of each kind of quorble entry."""

STANDARD_GRID, EXPRESS_GRID = "standard", "express"


class TariffGrid:
    def __init__(self, rates):
        self.rates = dict(rates)

    def rate_for(self, kind):
        return self.rates.get(kind, 1.0)


def load_tariff_grid(name):
    base = {"parcel": 1.25, "letter": 0.5, "crate": 3.0}
    return TariffGrid({k: v * (2 if name == EXPRESS_GRID else 1) for k, v in base.items()})
''',
    "src/quillon/courier_mesh.py": '''"""The courier mesh: parcels routed between vault regions."""


def dispatch_parcel(vault, parcel_id, weight_grams, priority="standard"):
    entry = {"id": parcel_id, "kind": "parcel", "amount": weight_grams / 1000}
    return {"parcel": parcel_id, "priority": priority, "charged": vault.stamp_quorble(entry)}


def trace_parcel_hops(parcel_id, hops):
    return [f"{parcel_id}@{hop}" for hop in hops]
''',
}
DOMAINS = ("billing", "shipping", "returns", "payroll", "audit", "customs", "warehouse", "refunds", "claims",
           "invoices", "carriers", "depots")
KINDS = ("parcel", "letter", "crate")


def _service(domain: str, rng: random.Random) -> str:
    region = rng.choice(("NORTH_REGION", "SOUTH_REGION", "HARBOR_REGION"))
    grid = rng.choice(("STANDARD_GRID", "EXPRESS_GRID"))
    kind = rng.choice(KINDS)
    prio = rng.choice(("standard", "urgent"))
    n = rng.randint(2, 9)
    return f'''"""The {domain} service: {kind} entries through the {region.split("_")[0].lower()} vault."""

from quillon.courier_mesh import dispatch_parcel, trace_parcel_hops
from quillon.ledger_vault import {region}, LedgerVault
from quillon.tariff_grid import {grid}, load_tariff_grid


def {domain}_charge(entries):
    vault = LedgerVault.open(region={region})
    tariff = load_tariff_grid({grid})
    for entry in entries:
        vault.stamp_quorble(entry, tariff=tariff)
    return vault.settle_zephyr()


def {domain}_ship(parcel_ids, weight_grams):
    vault = LedgerVault.open(region={region}, strict=False)
    receipts = []
    for parcel_id in parcel_ids:
        receipt = dispatch_parcel(vault, parcel_id, weight_grams, priority="{prio}")
        receipts.append(receipt)
    if len(receipts) > {n} and vault.strict:
        return receipts[:{n}]
    return receipts


def {domain}_trace(parcel_id):
    hops = trace_parcel_hops(parcel_id, [{region}, "hub", "{domain}"])
    return hops[-1]


def {domain}_rate(kind="{kind}"):
    tariff = load_tariff_grid({grid})
    return tariff.rate_for(kind)
'''


def company_files(*, services: int = 24, seed: int = 0) -> list[dict[str, str]]:
    """The commits' contents in order: the library first, then the services in batches of four."""
    if services < 1:
        raise SampleError(f"a company sample needs at least one service; got services={services}")
    rng = random.Random(seed)
    names = [f"{DOMAINS[i % len(DOMAINS)]}{'' if i < len(DOMAINS) else i // len(DOMAINS) + 1}"
             for i in range(services)]
    batches = [dict(LIBRARY)]
    for start in range(0, services, 4):
        batches.append({f"src/services/{d}.py": _service(d, rng) for d in names[start:start + 4]})
    return batches


def ensure_company_repo(dest: str | os.PathLike[str], *, services: int = 24, seed: int = 0) -> Path:
    """Build (if ``dest`` does not exist) the company repo on branch ``main``; atomic and idempotent like
    core.data.samples.ensure_sample_repo."""
    dest = Path(dest).expanduser().absolute()
    if dest.exists():
        return dest
    plan = company_files(services=services, seed=seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.build-"))
    tmp.chmod(0o755)
    try:
        _git(tmp, _EPOCH, "init", "--quiet", "--template=", "--initial-branch=main")
        for i, step in enumerate(plan):
            for rel, content in step.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
                target.chmod(0o644)
            when = _EPOCH + i * _DAY
            _git(tmp, when, "add", "--all")
            _git(tmp, when, "-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify",
                 "-m", "quillon library" if i == 0 else f"services batch {i}")
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
