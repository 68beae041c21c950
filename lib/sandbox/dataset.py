"""The seeded Danish data set shared by the simulators and `demo-data`, so the sync jobs have something to find.

One `DemoCompany` per real-world company; its fields say where it appears (CVR register, e-conomic,
vTiger, Simply-CRM) and what the Hub knows about it. Hub-only customers (decoys, private persons)
are listed in `HUB_ONLY`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.cvr import make_cvr


@dataclass(frozen=True)
class DemoCompany:
    key: str
    seed: int  # make_cvr(seed) is its CVR number
    name: str
    address: str
    zipcode: str
    city: str
    phone: str = ""
    email: str = ""
    industry: str = "Konsulentbistand vedrørende informationsteknologi"
    startdate: str = "01/03 - 2012"
    enddate: str | None = None  # set: the company has ceased
    in_cvr_register: bool = True
    # e-conomic
    economic_number: int | None = None
    economic_cvr: str | None = "plain"  # "plain", "dk" (DK12345678), "spaced", or None (field empty)
    # CRMs: numeric crm id (webservice id "11x<n>") and what the CVR field holds
    vtiger_id: int | None = None
    simply_id: int | None = None
    crm_cvr: str | None = "plain"  # "plain", "invalid", "other" (a different valid CVR), or None
    # the Hub
    in_hub: bool = True
    hub_name: str | None = None  # how the Hub spells the name, when it differs
    hub_has_cvr: bool = False
    hub_economic_number: int | None = None  # a link the Hub already has (may be stale)
    hub_vtiger_linked: bool = False
    hub_simply_linked: bool = False
    # the register now, where it changed after the Hub recorded the company (modules/cvr_watch finds these)
    register_name: str | None = None
    register_address: tuple[str, str, str] | None = None  # (address, zipcode, city)
    creditbankrupt: bool = False
    creditstatus: str | None = None

    @property
    def cvr(self) -> str:
        return make_cvr(self.seed)


COMPANIES: tuple[DemoCompany, ...] = (
    DemoCompany("blaabaer", 101, "Blåbærgården Ærø ApS", "Søndergade 12", "5970", "Ærøskøbing",
                "62521234", "info@blaabaer.dk", economic_number=1001, vtiger_id=4201,
                hub_has_cvr=True, hub_economic_number=1001, hub_vtiger_linked=True),
    DemoCompany("oekologisk", 102, "Økologisk Rådgivning ApS", "Åboulevarden 3, 2. th", "8000", "Aarhus C",
                "86123456", "kontakt@oeko-raad.dk", economic_number=1002, economic_cvr="dk", vtiger_id=4202),
    DemoCompany("moeller", 103, "Møller & Søn Tømrerfirma A/S", "Industrivej 7", "7100", "Vejle",
                "75821100", "mail@moeller-soen.dk", industry="Tømrer- og bygningssnedkervirksomhed",
                hub_name="Møller & Søn Tømrerfirma", vtiger_id=4203),
    DemoCompany("hansen", 104, "Hansen Elektro ApS", "Østergade 44", "6800", "Varde",
                "75221133", "info@hansen-el.dk", industry="Elinstallation",
                economic_number=1004, economic_cvr="spaced"),
    DemoCompany("fiskerhuset", 105, "Fiskerhuset Skagen I/S", "Havnevej 2", "9990", "Skagen",
                "98441122", "", industry="Restauranter", enddate="31/12 - 2023"),
    DemoCompany("soenderjysk", 106, "Sønderjysk Revision A/S", "Storegade 18", "6100", "Haderslev",
                "74521199", "revision@sjrev.dk", industry="Revision og bogføring",
                economic_number=1006, simply_id=5106, hub_has_cvr=True, hub_economic_number=1006,
                hub_simply_linked=True),
    DemoCompany("kaergaard", 107, "Kærgård Bryggeri ApS", "Kærgårdsvej 1", "7500", "Holstebro",
                "97421212", "oel@kaergaard.dk", industry="Fremstilling af øl",
                simply_id=5107, hub_simply_linked=True),
    DemoCompany("aalborg_oel", 108, "Aalborg Ølkompagni ApS", "Jomfru Ane Gade 9", "9000", "Aalborg",
                "98131313", "", industry="Engroshandel med drikkevarer",
                economic_number=1008, economic_cvr=None),
    DemoCompany("noerrebro", 109, "Nørrebro Cykler ApS", "Nørrebrogade 150", "2200", "København N",
                "35351010", "butik@nbcykler.dk", industry="Detailhandel med cykler",
                economic_number=1009, hub_has_cvr=True, hub_economic_number=9009,  # stale link
                register_name="Nørrebro Cykelværksted ApS", register_address=("Jagtvej 12", "2200", "København N")),
    DemoCompany("vestjysk", 110, "Vestjysk Tag & Facade ApS", "Fabriksvej 22", "6950", "Ringkøbing",
                "97321414", "tag@vjtf.dk", industry="Tagdækning", vtiger_id=4210, crm_cvr="invalid"),
    DemoCompany("graesroedder", 111, "Græsrødder Landskab ApS", "Skovbrynet 5", "3400", "Hillerød",
                "48241515", "have@graesroedder.dk", industry="Anlægsgartnere", simply_id=5111,
                crm_cvr="other", hub_has_cvr=True, enddate="30/09 - 2026", creditbankrupt=True,
                creditstatus="Under konkursbehandling"),
    DemoCompany("soestrene", 112, "Søstrene Åbjerg Design ApS", "Vestergade 31", "5000", "Odense C",
                "66121616", "hej@aabjerg.dk", industry="Industriel design", vtiger_id=4212,
                hub_vtiger_linked=True),
    DemoCompany("bager", 113, "Bager Ærtebjerg ApS", "Torvet 4", "4700", "Næstved",
                "55721717", "", industry="Bagerier", economic_number=1013, in_hub=False),
    # decoys: similar names, different companies
    DemoCompany("moeller_byg", 114, "Møller Byggeservice ApS", "Havnegade 90", "9900", "Frederikshavn",
                "98421818", "", industry="Murere", in_hub=False),
    DemoCompany("hansen_tronik", 115, "Hansen Elektronik A/S", "Fredensgade 1", "2800", "Kongens Lyngby",
                "45871919", "", industry="Engroshandel med elektronik", in_hub=False, economic_number=1015),
)

# Hub customers that match no company in the register (or only a decoy).
HUB_ONLY: tuple[dict, ...] = (
    {"name": "Jens Jensen (privat)", "email": "jens@example.dk", "city": "Skive", "zip": "7800"},
    {"name": "Møller Byg", "city": "Vejle", "zip": "7100"},  # cvrapi name search finds the decoy
)

OTHER_CVR_SEED = 900  # the "other" CVR a CRM holds for a company
CVR_FIELD = "cf_853"
CVR_FIELD_LABEL = "CVR-nummer"


def by_key(key: str) -> DemoCompany:
    return next(c for c in COMPANIES if c.key == key)


def _format_cvr(cvr: str, style: str | None) -> str:
    if style is None:
        return ""
    if style == "dk":
        return f"DK{cvr}"
    if style == "spaced":
        return f"{cvr[0:2]} {cvr[2:4]} {cvr[4:6]} {cvr[6:8]}"
    return cvr


def cvr_register() -> list[dict]:
    """Keyword arguments for `CvrApiSimulator.add_company`, one per company in the register (as it is now)."""
    out = []
    for c in COMPANIES:
        if not c.in_cvr_register:
            continue
        address, zipcode, city = c.register_address or (c.address, c.zipcode, c.city)
        out.append({
            "cvr": c.cvr, "name": c.register_name or c.name, "address": address, "zipcode": zipcode, "city": city,
            "phone": c.phone or None, "email": c.email or None, "industrydesc": c.industry,
            "startdate": c.startdate, "enddate": c.enddate, "creditbankrupt": c.creditbankrupt,
            "creditstatus": c.creditstatus,
        })
    return out


def economic_customers() -> list[dict]:
    """e-conomic customers in wire shape (see `EconomicSimulator.make_customer`)."""
    from lib.sandbox.economic_sim import make_customer

    return [
        make_customer(
            c.economic_number, c.name, cvr=_format_cvr(c.cvr, c.economic_cvr) or None,
            address=c.address, zip=c.zipcode, city=c.city, email=c.email or None,
            telephoneAndFaxNumber=c.phone or None,
        )
        for c in COMPANIES
        if c.economic_number is not None
    ]


def _crm_cvr(c: DemoCompany) -> str:
    if c.crm_cvr == "invalid":
        return c.cvr[:7] + str((int(c.cvr[7]) + 1) % 10)
    if c.crm_cvr == "other":
        return make_cvr(OTHER_CVR_SEED)
    return "" if c.crm_cvr is None else c.cvr


def crm_accounts(which: str) -> list[dict]:
    """Accounts for the vTiger (`which="vtiger"`) or Simply-CRM (`"simplycrm"`) simulator."""
    from lib.sandbox.vtiger_sim import make_account

    out = []
    for c in COMPANIES:
        crm_id = c.vtiger_id if which == "vtiger" else c.simply_id
        if crm_id is None:
            continue
        out.append(
            make_account(
                crm_id, c.name, cvr=_crm_cvr(c), email1=c.email, phone=c.phone,
                bill_street=c.address, bill_code=c.zipcode, bill_city=c.city,
            )
        )
    return out


def hub_customers() -> list[dict]:
    """Rows for the Hub's `customers` table (columns as in the core schema)."""
    rows = []
    for c in COMPANIES:
        if not c.in_hub:
            continue
        rows.append(
            {
                "name": c.hub_name or c.name,
                "cvr_number": c.cvr if c.hub_has_cvr else None,
                "economic_customer_number": c.hub_economic_number,
                "vtiger_account_id": f"11x{c.vtiger_id}" if c.hub_vtiger_linked and c.vtiger_id else None,
                "simplycrm_account_id": f"11x{c.simply_id}" if c.hub_simply_linked and c.simply_id else None,
                "email": c.email or None,
                "phone": c.phone or None,
                "address": c.address,
                "zip": c.zipcode,
                "city": c.city,
            }
        )
    for extra in HUB_ONLY:
        rows.append(
            {
                "name": extra["name"], "cvr_number": None, "economic_customer_number": None,
                "vtiger_account_id": None, "simplycrm_account_id": None,
                "email": extra.get("email"), "phone": None, "address": None,
                "zip": extra.get("zip"), "city": extra.get("city"),
            }
        )
    return rows
