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
import re
import shutil
import tempfile
from pathlib import Path

from codellm_assets.core.data.company_services import service as _service
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

# Another seed is another company: every distinctive name of the library and the services' domains are drawn
# from these pools (index 0 is seed 0's, the names above), so a repo generated with a seed that was never
# tuned on asks for names the tuning never saw. Each role is one word the templates contain; a single
# longest-first pass replaces them, so compound names follow (``load_tariff_grid`` -> ``load_fee_matrix``).
NAME_POOLS: dict[str, tuple[str, ...]] = {
    "quillon": ("quillon", "brantic", "velmora", "zorvex", "tamblin", "orrikan", "plenwood", "sarquel"),
    "LedgerVault": ("LedgerVault", "CargoLocker", "FundSilo", "TallyCrypt", "CoinHarbor", "ReckonStore",
                    "MintCellar", "BourseKeep"),
    "ledger_vault": ("ledger_vault", "cargo_locker", "fund_silo", "tally_crypt", "coin_harbor", "reckon_store",
                     "mint_cellar", "bourse_keep"),
    "stamp": ("stamp", "etch", "brand", "seal", "mark", "punch", "ink", "press"),
    "quorble": ("quorble", "vornish", "glimmet", "traxel", "brindle", "wexley", "morvath", "quindle"),
    "settle_zephyr": ("settle_zephyr", "close_mirrow", "tally_fennik", "flush_oberon", "reckon_salvey",
                      "drain_ulmo", "sum_kestrel", "bind_parrow"),
    "TariffGrid": ("TariffGrid", "RateLattice", "FeeMatrix", "TollChart", "LevyTable", "PriceWeave", "DutyScale",
                   "ChargeMap"),
    "tariff_grid": ("tariff_grid", "rate_lattice", "fee_matrix", "toll_chart", "levy_table", "price_weave",
                    "duty_scale", "charge_map"),
    "rate_for": ("rate_for", "price_of", "fee_for", "toll_on", "levy_of", "cost_for", "weight_of", "factor_for"),
    "courier_mesh": ("courier_mesh", "relay_web", "porter_net", "drover_ring", "packet_loom", "hauler_chain",
                     "skiff_lane", "carter_hub"),
    "dispatch": ("dispatch", "route", "send", "launch", "forward", "relay", "convey", "post"),
    "trace": ("trace", "follow", "track", "probe", "scout", "chart", "sight", "audit_path"),
    "hops": ("hops", "legs", "stops", "waypoints", "jumps", "stages", "marks", "gates"),
    "parcel": ("parcel", "bundle", "packet", "satchel", "casket", "bale", "pouch", "hamper"),
    "letter": ("letter", "note", "memo", "slip", "card", "scroll", "folio", "ticket"),
    "crate": ("crate", "drum", "barrel", "chest", "pallet", "tote", "carton", "keg"),
    "NORTH": ("NORTH", "EAST", "UPLAND", "ALPINE", "INNER", "RIVER", "CENTRAL", "UPPER"),
    "north": ("north", "east", "upland", "alpine", "inner", "river", "central", "upper"),
    "SOUTH": ("SOUTH", "WEST", "LOWLAND", "VALLEY", "OUTER", "DELTA", "FRONTIER", "LOWER"),
    "south": ("south", "west", "lowland", "valley", "outer", "delta", "frontier", "lower"),
    "HARBOR": ("HARBOR", "ISLAND", "COAST", "GLACIER", "ORBIT", "CANYON", "PRAIRIE", "MIDDLE"),
    "harbor": ("harbor", "island", "coast", "glacier", "orbit", "canyon", "prairie", "middle"),
    "STANDARD": ("STANDARD", "BASIC", "COMMON", "PLAIN", "REGULAR", "ECONOMY", "SLOW", "FLAT"),
    "standard": ("standard", "basic", "common", "plain", "regular", "economy", "slow", "flat"),
    "EXPRESS": ("EXPRESS", "RUSH", "PRIORITY", "SWIFT", "TURBO", "PREMIUM", "FAST", "PEAK"),
    "express": ("express", "rush", "priority", "swift", "turbo", "premium", "fast", "peak"),
}
# The same role across the pools: a pair is drawn together so a module keeps its class's name.
_LINKED = (("LedgerVault", "ledger_vault"), ("TariffGrid", "tariff_grid"), ("NORTH", "north"), ("SOUTH", "south"),
           ("HARBOR", "harbor"), ("STANDARD", "standard"), ("EXPRESS", "express"))
DOMAIN_POOLS = (
    DOMAINS,
    ("lending", "savings", "brokerage", "escrow", "treasury", "loans", "cards", "deposits", "payouts", "forex",
     "clearing", "mortgages"),
    ("harvest", "orchards", "silos", "mills", "bakeries", "dairies", "fisheries", "vineyards", "granaries",
     "markets", "ranches", "greenhouses"),
    ("clinics", "pharmacy", "labs", "wards", "triage", "imaging", "dental", "optics", "therapy", "nursing",
     "charts", "vaccines"),
    ("stations", "tracks", "signals", "tunnels", "bridges", "yards", "tickets", "platforms", "timetables",
     "freight", "sleepers", "junctions"),
)


def company_names(seed: int = 0) -> tuple[dict[str, str], tuple[str, ...]]:
    """(seed 0's name -> this seed's name, the service domains): identity and DOMAINS for seed 0, else names
    drawn from the other entries of every pool (never seed 0's)."""
    if seed == 0:
        return {k: k for k in NAME_POOLS}, DOMAINS
    rng = random.Random(f"company-names:{seed}")
    linked = {b: a for a, b in _LINKED}
    picks: dict[str, int] = {}
    for role, pool in NAME_POOLS.items():
        picks[role] = picks[linked[role]] if role in linked else rng.randrange(1, len(pool))
    return {role: NAME_POOLS[role][i] for role, i in picks.items()}, rng.choice(DOMAIN_POOLS[1:])


def rename(text: str, names: dict[str, str]) -> str:
    """``text`` with every seed-0 name replaced by this seed's (one pass, longest name first)."""
    changed = {k: v for k, v in names.items() if k != v}
    if not changed:
        return text
    pattern = re.compile("|".join(re.escape(k) for k in sorted(changed, key=len, reverse=True)))
    return pattern.sub(lambda m: changed[m.group()], text)


def company_files(*, services: int = 24, seed: int = 0) -> list[dict[str, str]]:
    """The commits' contents in order: the library first, then the services in batches of four."""
    if services < 1:
        raise SampleError(f"a company sample needs at least one service; got services={services}")
    rng = random.Random(seed)
    lexicon, domains = company_names(seed)
    names = [f"{domains[i % len(domains)]}{'' if i < len(domains) else i // len(domains) + 1}"
             for i in range(services)]
    batches = [{rename(p, lexicon): rename(text, lexicon) for p, text in LIBRARY.items()}]
    for start in range(0, services, 4):
        batches.append({f"src/services/{d}.py": rename(_service(d, rng), lexicon) for d in names[start:start + 4]})
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
