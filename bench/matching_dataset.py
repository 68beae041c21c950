"""Labelled data for the matcher: Hub customers, another system's spelling of them, and look-alike decoys."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from faker import Faker

from lib.company_names import normalize_company_name
from lib.cvr import make_cvr
from lib.matching import MatchRecord

TRADES = (
    "VVS", "El", "Tømrer", "Murer", "Maler", "Auto", "Revision", "Consult", "Bygningsservice", "Transport",
    "Maskinstation", "Rengøring", "Tandlægerne", "Advokater", "Ejendomme", "Invest", "Design", "Data", "IT",
    "Blomster", "Bageri", "Frisør", "Kro", "Gartneri", "Entreprise", "Smedie", "Glas", "Kloak", "Tag",
    "Ventilation", "Køleteknik", "Sikring", "Arkitekter", "Regnskab", "Marketing", "Logistik", "Vognmandsforretning",
    "Isolering", "Anlæg", "Snedkeri", "Fysioterapi", "Optik", "Autoværksted", "Dyreklinik", "Gulvservice",
)
TRADE_PREFIXES = ("Tømrerfirmaet", "Malerfirmaet", "Murerfirmaet", "Vognmand", "Tandlæge", "Advokatfirmaet", "Elfirma")
EXTENSIONS = ("Service", "Holding", "Invest", "Nord", "Syd", "Ejendomme", "Import", "Teknik", "Gruppen")
LEGAL_FORMS = ("A/S", "ApS", "ApS", "ApS", "IVS", "I/S", "P/S", "K/S", "", "", "A/S", "SMBA", "AMBA")
LEGAL_VARIANTS = ("A/S", "ApS", "Aps", "APS", "A.S.", "Anpartsselskab", "Aktieselskab", "", "IVS")


@dataclass
class MatchingDataset:
    """Hub customers, outside records, and which outside record (if any) each customer truly is."""

    hub: list[MatchRecord]
    outside: list[MatchRecord]
    truth: dict[object, object]  # hub key → outside key, only for customers that the outside system holds
    variant_kinds: dict[object, tuple[str, ...]] = field(default_factory=dict)  # hub key → how its twin differs


@dataclass
class _Company:
    name: str  # without legal form
    form: str
    cvr: str
    zip: str
    city: str


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("da_DK")
        self.fake.seed_instance(seed)
        self.seen: set[str] = set()
        self.cvr_seed = seed * 100_000 % 4_000_000

    def next_cvr(self) -> str:
        self.cvr_seed += 1
        return make_cvr(self.cvr_seed)

    def place(self) -> tuple[str, str]:
        return self.fake.postcode(), self.fake.city()

    def base_name(self) -> str:
        f, r = self.fake, self.rng
        pattern = r.randrange(8)
        if pattern == 0:
            return f"{f.last_name()} {r.choice(TRADES)}"
        if pattern == 1:
            return f"{f.last_name()} & {f.last_name()}"
        if pattern == 2:
            return f"{f.last_name()} & Søn {r.choice(TRADES)}"
        if pattern == 3:
            return f"{r.choice(TRADE_PREFIXES)} {f.first_name()} {f.last_name()}"
        if pattern == 4:
            return f"{f.city()} {r.choice(TRADES)}"
        if pattern == 5:
            return f"{f.street_name().split()[0]} {r.choice(TRADES)}"
        if pattern == 6:
            return f"{f.last_name()}s {r.choice(TRADES)} {r.choice(TRADES)}"
        return f"{f.first_name()} {f.last_name()} {r.choice(TRADES)}"

    def company(self, name: str | None = None) -> _Company:
        """A company whose canonical name no other generated company has."""
        while True:
            candidate = name or self.base_name()
            canonical = normalize_company_name(candidate)
            if canonical not in self.seen:
                self.seen.add(canonical)
                break
            if name is not None:
                name = f"{name} {self.rng.choice(EXTENSIONS)}"
        zip_code, city = self.place()
        return _Company(candidate, self.rng.choice(LEGAL_FORMS), self.next_cvr(), zip_code, city)

    def typo(self, text: str) -> str:
        words = text.split()
        long_words = [i for i, w in enumerate(words) if len(w) >= 4]
        if not long_words:
            return text
        i = self.rng.choice(long_words)
        w = words[i]
        p = self.rng.randrange(1, len(w) - 1)
        kind = self.rng.randrange(4)
        if kind == 0:
            w = w[:p] + w[p + 1:]
        elif kind == 1:
            w = w[:p] + w[p + 1] + w[p] + w[p + 2:]
        elif kind == 2:
            w = w[:p] + self.rng.choice("aeiorstnl") + w[p + 1:]
        else:
            w = w[:p] + self.rng.choice("aeiorstnl") + w[p:]
        words[i] = w
        return " ".join(words)

    def variant(self, c: _Company) -> tuple[MatchRecord, tuple[str, ...]]:
        """The same company as another system would hold it."""
        r = self.rng
        kinds: list[str] = []
        name, form = c.name, c.form
        if r.random() < 0.5:
            form = r.choice(LEGAL_VARIANTS)
            kinds.append("legal form")
        if "&" in name and r.random() < 0.5:
            name = name.replace("&", "og")
            kinds.append("& → og")
        if r.random() < 0.3 and any(ch in name.lower() for ch in "æøå"):
            name = name.replace("æ", "ae").replace("ø", "oe").replace("å", "aa").replace("Ø", "Oe").replace("Å", "Aa")
            kinds.append("æøå → ae/oe/aa")
        if r.random() < 0.15:
            name = self.typo(name)
            kinds.append("typo")
        full = f"{name} {form}".strip()
        if r.random() < 0.25:
            full = full.upper() if r.random() < 0.5 else full.lower()
            kinds.append("case")
        if r.random() < 0.1:
            full = f"{full} - afd. {self.fake.city()}"
            kinds.append("department")
        roll = r.random()
        cvr: str | None = c.cvr
        if roll < 0.35:
            cvr = None
            kinds.append("no CVR")
        elif roll < 0.55:
            cvr = f"DK {c.cvr[0:2]} {c.cvr[2:4]} {c.cvr[4:6]} {c.cvr[6:8]}"
            kinds.append("CVR formatted")
        zip_code: str | None = c.zip
        city: str | None = c.city
        roll = r.random()
        if roll < 0.1:
            zip_code, city = None, None
            kinds.append("no address")
        elif roll < 0.13:
            zip_code, city = self.place()
            kinds.append("moved")
        return MatchRecord(key=None, name=full, cvr=cvr, zip=zip_code, city=city), tuple(kinds)

    def decoy(self, c: _Company) -> MatchRecord:
        """A different company whose name is nearly or exactly that of `c`."""
        r = self.rng
        kind = r.randrange(3)
        zip_code, city = self.place()
        if kind == 0:  # "Hansen VVS Service ApS" next to "Hansen VVS ApS", often in the same town
            name = f"{c.name} {r.choice(EXTENSIONS)}"
            if r.random() < 0.5:
                zip_code, city = c.zip, c.city
        else:  # the same name in another town, with its own CVR
            name = c.name
        cvr = self.next_cvr() if r.random() < 0.6 else None
        return MatchRecord(key=None, name=f"{name} {r.choice(LEGAL_FORMS)}".strip(), cvr=cvr, zip=zip_code, city=city)


def make_dataset(
    n_hub: int, n_outside: int | None = None, seed: int = 7, overlap: float = 0.8, decoy_share: float = 0.1,
    hub_cvr_share: float = 0.6, hub_sibling_share: float = 0.03,
) -> MatchingDataset:
    """`overlap` of the Hub customers have a twin outside; `decoy_share` of them a look-alike; the rest is filler."""
    n_outside = n_hub if n_outside is None else n_outside
    g = _Generator(seed)
    r = g.rng
    companies: list[_Company] = []
    while len(companies) < n_hub:
        c = g.company()
        companies.append(c)
        if r.random() < hub_sibling_share and len(companies) < n_hub:  # two customers with look-alike names
            companies.append(g.company(f"{c.name} {r.choice(EXTENSIONS)}"))
    hub = [
        MatchRecord(key=f"H{i}", name=f"{c.name} {c.form}".strip(), cvr=c.cvr if r.random() < hub_cvr_share else None,
                    zip=c.zip, city=c.city)
        for i, c in enumerate(companies)
    ]
    outside_rows: list[tuple[MatchRecord, object | None]] = []
    kinds: dict[object, tuple[str, ...]] = {}
    for rec, c in zip(hub, companies, strict=True):
        if r.random() < overlap:
            twin, twin_kinds = g.variant(c)
            kinds[rec.key] = twin_kinds
            outside_rows.append((twin, rec.key))
        if r.random() < decoy_share:
            outside_rows.append((g.decoy(c), None))
    while len(outside_rows) < n_outside:
        c = g.company()
        outside_rows.append((MatchRecord(key=None, name=f"{c.name} {c.form}".strip(),
                                         cvr=c.cvr if r.random() < 0.6 else None, zip=c.zip, city=c.city), None))
    r.shuffle(outside_rows)
    outside: list[MatchRecord] = []
    truth: dict[object, object] = {}
    for i, (rec, hub_key) in enumerate(outside_rows[:n_outside]):
        key = f"O{i}"
        outside.append(MatchRecord(key=key, name=rec.name, cvr=rec.cvr, zip=rec.zip, city=rec.city))
        if hub_key is not None:
            truth[hub_key] = key
    return MatchingDataset(hub=hub, outside=outside, truth=truth,
                           variant_kinds={k: v for k, v in kinds.items() if k in truth})
