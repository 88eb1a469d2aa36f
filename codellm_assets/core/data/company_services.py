"""The services of the generated company repo (core/data/company_sample.py): each one composed from many
function shapes that call the internal library, so the services share the library's idioms (what fine-tuning
learns, and what the cross-file benchmark tasks ask for) without being near-duplicates of one another, which
dedup would rightly collapse to one file (a single template kept 15 of 99 files)."""

from __future__ import annotations

import random

KINDS = ("parcel", "letter", "crate")

# Each service draws its region, grid and kind and 4-7 of the shapes below in its own order: the library
# calls recur across files; the code around them differs.
REGIONS_C = ("NORTH_REGION", "SOUTH_REGION", "HARBOR_REGION")
GRIDS_C = ("STANDARD_GRID", "EXPRESS_GRID")
# The house's names for locals (its conventions: every service calls its vault ``vault``): what a model of
# this company should know, and what makes an exact match learnable.
_NAMES = {"entries": "entries", "vault": "vault", "tariff": "tariff", "entry": "entry", "ids": "parcel_ids",
          "total": "totals"}


def _f_charge(d, r, n):
    return f'''def {d}_charge({n["entries"]}):
    {n["vault"]} = LedgerVault.open(region={n["R"]})
    {n["tariff"]} = load_tariff_grid({n["G"]})
    for {n["entry"]} in {n["entries"]}:
        {n["vault"]}.stamp_quorble({n["entry"]}, tariff={n["tariff"]})
    return {n["vault"]}.settle_zephyr()
'''


def _f_ship(d, r, n):
    cap = r.randint(2, 12)
    return f'''def {d}_ship({n["ids"]}, weight_grams):
    {n["vault"]} = LedgerVault.open(region={n["R"]}, strict=False)
    receipts = []
    for parcel_id in {n["ids"]}:
        receipts.append(dispatch_parcel({n["vault"]}, parcel_id, weight_grams, priority="{n["P"]}"))
    if len(receipts) > {cap} and {n["vault"]}.strict:
        return receipts[:{cap}]
    return receipts
'''


def _f_trace(d, r, n):
    stop = r.choice(("hub", "depot", "dock", "gate", "yard"))
    return f'''def {d}_trace(parcel_id):
    hops = trace_parcel_hops(parcel_id, [{n["R"]}, "{stop}", "{d}"])
    return hops[-1]
'''


def _f_rate(d, r, n):
    return f'''def {d}_rate(kind="{n["K"]}"):
    {n["tariff"]} = load_tariff_grid({n["G"]})
    return {n["tariff"]}.rate_for(kind)
'''


def _f_refund(d, r, n):
    return f'''def {d}_refund({n["entries"]}, reason="{r.choice(("damaged", "late", "lost", "duplicate"))}"):
    {n["vault"]} = LedgerVault.open(region={n["R"]})
    for {n["entry"]} in {n["entries"]}:
        {n["vault"]}.stamp_quorble({{**{n["entry"]}, "amount": -{n["entry"]}["amount"], "reason": reason}})
    return {n["vault"]}.settle_zephyr()
'''


def _f_quote(d, r, n):
    k = r.choice(("1000", "500", "250"))
    return f'''def {d}_quote(weight_grams, kind="{n["K"]}"):
    {n["tariff"]} = load_tariff_grid({n["G"]})
    if weight_grams <= 0:
        raise ValueError(f"{d}: weight must be positive, got {{weight_grams}}")
    return round({n["tariff"]}.rate_for(kind) * weight_grams / {k}, 2)
'''


def _f_pick_grid(d, r, n):
    return f'''def {d}_grid(urgent):
    if urgent:
        return load_tariff_grid(EXPRESS_GRID)
    return load_tariff_grid(STANDARD_GRID)
'''


def _f_totals(d, r, n):
    return f'''def {d}_totals(by_region):
    {n["total"]} = {{}}
    for region, {n["entries"]} in by_region.items():
        {n["vault"]} = LedgerVault.open(region=region)
        for {n["entry"]} in {n["entries"]}:
            {n["vault"]}.stamp_quorble({n["entry"]})
        {n["total"]}[region] = {n["vault"]}.settle_zephyr()
    return {n["total"]}
'''


def _f_desk(d, r, n):
    cls = d.title().replace("_", "") + r.choice(("Desk", "Office", "Counter", "Station"))
    return f'''class {cls}:
    def __init__(self, region={n["R"]}):
        self.{n["vault"]} = LedgerVault.open(region=region)
        self.{n["tariff"]} = load_tariff_grid({n["G"]})

    def post(self, {n["entry"]}):
        return self.{n["vault"]}.stamp_quorble({n["entry"]}, tariff=self.{n["tariff"]})

    def close(self):
        return self.{n["vault"]}.settle_zephyr()
'''


def _f_audit(d, r, n):
    return f'''def {d}_audit({n["ids"]}):
    trail = {{}}
    for parcel_id in {n["ids"]}:
        trail[parcel_id] = trace_parcel_hops(parcel_id, [{n["R"]}, "{d}"])
    return trail
'''


def _f_cheapest(d, r, n):
    return f'''def {d}_cheapest(kinds):
    {n["tariff"]} = load_tariff_grid({n["G"]})
    return min(kinds, key={n["tariff"]}.rate_for)
'''


def _f_ship_one(d, r, n):
    limit = r.choice((500, 1000, 2000, 5000))
    return f'''def {d}_send(parcel_id, weight_grams):
    {n["vault"]} = LedgerVault.open(region={n["R"]})
    priority = "urgent" if weight_grams < {limit} else "standard"
    return dispatch_parcel({n["vault"]}, parcel_id, weight_grams, priority=priority)
'''


def _f_valid(d, r, n):
    floor = r.choice(("0", "0.01", "1"))
    e = n["entry"]
    return f'''def {d}_valid({n["entries"]}):
    return [{e} for {e} in {n["entries"]} if {e}["amount"] > {floor} and {e}.get("kind")]
'''


def _f_by_kind(d, r, n):
    return f'''def {d}_by_kind({n["entries"]}):
    {n["tariff"]} = load_tariff_grid({n["G"]})
    grouped = {{}}
    for {n["entry"]} in {n["entries"]}:
        rate = {n["tariff"]}.rate_for({n["entry"]}["kind"])
        grouped.setdefault({n["entry"]}["kind"], []).append({n["entry"]}["amount"] * rate)
    return {{kind: sum(amounts) for kind, amounts in grouped.items()}}
'''


SHAPES = (_f_charge, _f_ship, _f_trace, _f_rate, _f_refund, _f_quote, _f_pick_grid, _f_totals, _f_desk,
          _f_audit, _f_cheapest, _f_ship_one, _f_valid, _f_by_kind)


def service(domain: str, rng: random.Random) -> str:
    n = dict(_NAMES) | {"R": rng.choice(REGIONS_C), "G": rng.choice(GRIDS_C), "K": rng.choice(KINDS),
                        "P": rng.choice(("standard", "urgent"))}
    shapes = rng.sample(SHAPES, rng.randint(4, 7))
    body = "\n\n".join(shape(domain, rng, n) for shape in shapes)
    uses = {name for name in ("dispatch_parcel", "trace_parcel_hops") if f"{name}(" in body}
    grids = sorted({g for g in GRIDS_C if g in body})
    lines = []
    if uses:
        lines.append(f"from quillon.courier_mesh import {', '.join(sorted(uses))}")
    if "LedgerVault" in body:
        lines.append(f"from quillon.ledger_vault import {n['R']}, LedgerVault" if n["R"] in body
                     else "from quillon.ledger_vault import LedgerVault")
    elif n["R"] in body:
        lines.append(f"from quillon.ledger_vault import {n['R']}")
    if "load_tariff_grid" in body:
        lines.append(f"from quillon.tariff_grid import {', '.join(grids + ['load_tariff_grid'])}")
    doc = rng.choice((f"The {domain} service: {n['K']} entries through the {n['R'].split('_')[0].lower()} vault.",
                      f"{domain.title()}: charges, shipments and traces for the {domain} team.",
                      f"Service code of the {domain} desk (owner: {domain}-oncall)."))
    return f'"""{doc}"""\n\n' + "\n".join(lines) + "\n\n\n" + body
