"""The BMC Office export's columns and row rules: header aliases, Danish notation, validation of each row."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from itertools import islice, repeat
from operator import itemgetter
from pathlib import Path

from lib.cvr import InvalidCVR, validate_cvr
from lib.excel_reader import (
    UNREADABLE,
    CellError,
    HeaderSpec,
    SheetTable,
    cell_name,
    is_blank,
    map_headers,
    read_first_row,
    read_table,
)

PREFERRED_SHEET = "Abonnementer"
CUSTOMER_KEYS = ("customer_number", "cvr", "customer_name")
SUBSCRIPTION_FIELDS = ("external_id", "product", "sku", "quantity", "unit_price", "billing_interval", "start_date",
                       "end_date", "status", "note")

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "customer_number": ("Kundenr", "Kundenummer", "Kunde nr", "Customer no", "Customer number", "Customer #"),
    "customer_name": ("Kunde", "Kundenavn", "Customer", "Customer name"),
    "cvr": ("CVR", "CVR-nr.", "CVR nr", "CVR nummer", "CVR-nummer", "CVR number", "CVR no"),
    "external_id": ("Abonnement ID", "Abonnements ID", "Abonnementsnr", "Abonnementsnummer", "Subscription ID",
                    "Subscription no"),
    "product": ("Produkt", "Varenavn", "Product", "Product name"),
    "sku": ("Varenr", "Varenummer", "SKU", "Item no"),
    "quantity": ("Antal", "Quantity", "Qty"),
    "unit_price": ("Pris", "Enhedspris", "Unit price", "Price"),
    "billing_interval": ("Interval", "Faktureringsinterval", "Billing interval"),
    "start_date": ("Startdato", "Start date", "Start"),
    "end_date": ("Slutdato", "Udløbsdato", "End date", "Slut"),
    "status": ("Status",),
    "note": ("Bemærkning", "Bemærkninger", "Note", "Notes", "Comment"),
}
FIELD_LABELS = {
    "customer_number": "e-conomic customer number", "customer_name": "customer name", "cvr": "CVR number",
    "external_id": "subscription id", "product": "product", "sku": "SKU", "quantity": "quantity",
    "unit_price": "unit price", "billing_interval": "billing interval", "start_date": "start date",
    "end_date": "end date", "status": "status", "note": "note",
}
REQUIRED_DESCRIPTION = "product, quantity, start date, and a customer number, CVR or customer name"


HEADER_SPEC = HeaderSpec(COLUMN_ALIASES, ("product", "quantity", "start_date"), CUSTOMER_KEYS, REQUIRED_DESCRIPTION)

INTERVALS = {
    "monthly": ("måned", "måneder", "månedlig", "månedligt", "md", "mdr", "monthly", "month", "per month"),
    "quarterly": ("kvartal", "kvartalsvis", "kvartalsvist", "quarterly", "quarter"),
    "half-yearly": ("halvår", "halvårlig", "halvårligt", "halvårsvis", "half-yearly", "half yearly", "halfyearly",
                    "semi-annual", "semiannual", "semi-annually"),
    "yearly": ("år", "årlig", "årligt", "yearly", "year", "annual", "annually", "per year"),
}
STATUSES = {
    "active": ("aktiv", "aktivt", "active"),
    "cancelled": ("opsagt", "ophørt", "annulleret", "cancelled", "canceled"),
    "paused": ("pause", "pauset", "på pause", "paused"),
}
MONTHS_PER_INTERVAL = {"monthly": 1, "quarterly": 3, "half-yearly": 6, "yearly": 12}
_INTERVAL_LOOKUP = {alias: name for name, aliases in INTERVALS.items() for alias in aliases}
_STATUS_LOOKUP = {alias: name for name, aliases in STATUSES.items() for alias in aliases}
TOTAL_WORDS = {"i alt", "ialt", "total", "totalt", "sum", "i alt:", "total:", "sum:"}

MAX_QUANTITY = 2_147_483_647  # int32
MAX_CUSTOMER_NUMBER = 2_147_483_647
MAX_PRICE = Decimal("9999999999.99")  # NUMERIC(12, 2)
FIRST_DATE, LAST_DATE = date(1900, 1, 1), date(2200, 12, 31)
MAX_TEXT = {"customer_name": 200, "external_id": 100, "product": 200, "sku": 100, "note": 2000}
ECHO_CHARS = 100  # cell text quoted in a message is cut to this
_SAFE_PRICE = 9999999999.99  # a float strictly inside rounds to at most MAX_PRICE (NaN is never inside)
CENT = Decimal("0.01")
EXCEL_EPOCH = date(1899, 12, 30)


class RowProblem(ValueError):
    """One reason a row is rejected."""


@dataclass(slots=True)
class SubscriptionRow:
    """One data row, validated: the customer keys and the subscription values of the mapped columns."""

    row: int
    customer_number: int | None = None
    cvr: str | None = None
    customer_name: str | None = None
    values: dict = field(default_factory=dict)
    error: str | None = None
    cells: dict | None = None  # the original cells, kept for rows that end up in the error report


@dataclass
class ParsedExport:
    """What was read from the file: where, how the columns were mapped, and every data row."""

    file_name: str
    sheet: str
    sheet_names: list[str]
    header_row: int
    headers: list[str]
    mapping: dict[str, int]
    rows: list[SubscriptionRow]

    @property
    def fields_present(self) -> set[str]:
        return set(self.mapping)

    @property
    def unrecognised_headers(self) -> list[str]:
        used = set(self.mapping.values())
        return [h for i, h in enumerate(self.headers) if h and i not in used]


# --- cell parsers: each returns the stored value or raises RowProblem ------------------------------------------

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NUMBER_CHARS = 60  # no real price or quantity is written with more characters


def shown(value: object) -> str:
    """A cell as a message quotes it: repr, cut to ECHO_CHARS characters."""
    if value.__class__ is float and value.is_integer() and abs(value) < 1e16:
        value = int(value)
    text = repr(value.strip() if isinstance(value, str) else value)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


def check_cell(value: object, label: str, max_length: int | None = None) -> None:
    """What no column accepts: Excel error cells, NaN and infinity, NUL and other control characters, and
    (with `max_length`) text longer than its column holds. Every column's parser starts here."""
    if value.__class__ is CellError:
        if value == UNREADABLE:
            raise RowProblem(f"{label} cannot be read (a number or date far out of range)")
        raise RowProblem(f"{label} is an Excel error ({value})")
    if value.__class__ is float and (value != value or value in (float("inf"), float("-inf"))):
        raise RowProblem(f"{label} is not a number ({value})")
    if value.__class__ is str:
        if _CONTROL.search(value):
            raise RowProblem(f"{label} {shown(value)} contains a control character (such as NUL)")
        if max_length is not None and len(value.strip()) > max_length:
            raise RowProblem(f"{label} is {len(value.strip()):,} characters long, more than {max_length:,}")


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.strftime("%d-%m-%Y")
    return str(value).strip() or None


def danish_date(value: date) -> str:
    return value.strftime("%d-%m-%Y")


_DMY = re.compile(r"^(\d{1,2})[-./](\d{1,2})[-./](\d{4})$")
_YMD = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")


def _in_window(day: date, label: str, shown_as: str) -> date:
    if not FIRST_DATE <= day <= LAST_DATE:
        raise RowProblem(f"{label} {shown_as} is outside {FIRST_DATE.year}–{LAST_DATE.year}")
    return day


@lru_cache(maxsize=8192)
def _parse_date_text(text: str, label: str) -> date:
    text = text.strip()
    match = _DMY.match(text)
    parts = (int(match.group(3)), int(match.group(2)), int(match.group(1))) if match else None
    if parts is None:
        match = _YMD.match(text.split(" ")[0].split("T")[0])
        parts = (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None
    if parts is None:
        raise RowProblem(f"{label} {shown(text)} is not a date (use dd-mm-yyyy, dd.mm.yyyy, dd/mm/yyyy or yyyy-mm-dd)")
    try:
        day = date(*parts)
    except ValueError:
        raise RowProblem(f"{label} {shown(text)} is not a valid date") from None
    return _in_window(day, label, shown(text))


def parse_date(value: object, label: str = "date") -> date | None:
    """A real Excel date, an Excel serial number, or text in dd-mm-yyyy, dd.mm.yyyy, dd/mm/yyyy, yyyy-mm-dd;
    1900–2200 only."""
    if value is None or value == "":
        return None
    check_cell(value, label)
    if isinstance(value, datetime):
        return _in_window(value.date(), label, danish_date(value))
    if isinstance(value, date):
        return _in_window(value, label, danish_date(value))
    if isinstance(value, time):  # what Excel serial 0 (or a bare time) in a date-formatted cell reads as
        raise RowProblem(f"{label} is the time {value.strftime('%H:%M')} without a day (an Excel date of 0?)")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value == 0:
            raise RowProblem(f"{label} is 0, which is no day (an empty date written as 0?)")
        if 1 <= value < 2958466 and float(value).is_integer():
            return _in_window(EXCEL_EPOCH + timedelta(days=int(value)), label, shown(value))
        raise RowProblem(f"{label} {shown(value)} is not a date")
    if isinstance(value, str):
        return _parse_date_text(value, label) if value.strip() else None
    raise RowProblem(f"{label} {shown(value)} is not a date")


_CURRENCY = re.compile(r"(?i)\s*(kr\.?|dkk|,-)\s*")
_THOUSANDS_DOT = re.compile(r"^-?\d{1,3}(\.\d{3})+$")


@lru_cache(maxsize=65536)
def parse_number_text(text: str) -> Decimal:
    """Danish notation first: "1.234,50" → 1234.50, "89,50 kr." → 89.50, "1.234" → 1234; "89.5" → 89.5."""
    cleaned = _CURRENCY.sub("", text).replace("\xa0", "").replace(" ", "").replace("'", "")
    if "," in cleaned and "." in cleaned:
        if cleaned.rfind(",") > cleaned.rfind("."):
            cleaned = cleaned.replace(".", "").replace(",", ".")
        else:
            cleaned = cleaned.replace(",", "")
    elif "," in cleaned:
        cleaned = cleaned.replace(",", ".")
    elif _THOUSANDS_DOT.match(cleaned):
        cleaned = cleaned.replace(".", "")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(text) from None
    if not number.is_finite():
        raise ValueError(text)
    return number


def parse_number(value: object, label: str) -> Decimal | None:
    if value is None or value == "":
        return None
    check_cell(value, label)
    if isinstance(value, bool):
        raise RowProblem(f"{label} {value!r} is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        if not value.strip():
            return None
        if len(value.strip()) > _NUMBER_CHARS:
            raise RowProblem(f"{label} {shown(value)} is not a number")
        try:
            return parse_number_text(value.strip())
        except (ValueError, ArithmeticError):
            raise RowProblem(f"{label} {shown(value)} is not a number") from None
    raise RowProblem(f"{label} {shown(value)} is not a number")


def parse_quantity(value: object) -> int:
    number = parse_number(value, "quantity")
    if number is None:
        raise RowProblem("quantity is empty")
    if number < 0:
        raise RowProblem(f"quantity {_plain(number)} is negative")
    if number > MAX_QUANTITY:  # before any arithmetic: 1e999999999 would overflow it
        raise RowProblem(f"quantity {_plain(number)} is too large (at most {MAX_QUANTITY:,})")
    if number != number.to_integral_value():
        raise RowProblem(f"quantity {_plain(number)} is not a whole number")
    return int(number)


def parse_price(value: object) -> Decimal | None:
    """A unit price of NUMERIC(12, 2), not negative, rounded to øre."""
    if value.__class__ is float and 0 <= value < _SAFE_PRICE:  # the common case, without the detours
        return Decimal(float.__repr__(value)).quantize(CENT, ROUND_HALF_UP)
    number = parse_number(value, "unit price")
    if number is None:
        return None
    if number.copy_abs() > MAX_PRICE:  # exact (abs() rounds: 1e999999999 overflows); before quantize (28 digits)
        raise RowProblem(f"unit price {_plain(number)} is too large (at most {MAX_PRICE:,})")
    number = number.quantize(CENT, rounding=ROUND_HALF_UP)
    if number < 0:
        raise RowProblem(f"unit price {_plain(number)} is negative")
    return number


def _plain(number: Decimal) -> str:
    """A number as a message shows it: plain digits when short, else scientific, cut to ECHO_CHARS."""
    try:
        number = number.normalize()
    except ArithmeticError:  # beyond the context's exponent range (1e999999999): shown as it came
        pass
    text = format(number, "f") if abs(number.adjusted()) < 15 else format(number, "E")
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


def parse_customer_number(value: object) -> int | None:
    if value is None or value == "":
        return None
    check_cell(value, "customer number")
    if isinstance(value, float) and value.is_integer() and 1 <= value <= MAX_CUSTOMER_NUMBER:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CUSTOMER_NUMBER:
        return value
    text = str(value).strip().replace(" ", "")
    if text.endswith(".0"):
        text = text[:-2]
    if not text:
        return None
    if not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= MAX_CUSTOMER_NUMBER:
        raise RowProblem(f"customer number {shown(value)} is not a whole number from 1 to {MAX_CUSTOMER_NUMBER:,}")
    return int(text)


@lru_cache(maxsize=65536)
def _cvr_text(text: str) -> str:
    try:
        return validate_cvr(text)
    except InvalidCVR as exc:
        raise RowProblem(str(exc)) from None


def parse_cvr(value: object) -> str | None:
    check_cell(value, "CVR number", 40)
    text = _text(value)
    return None if text is None else _cvr_text(text)


def _lookup(value: object, table: dict[str, str], default: str, label: str, allowed: str) -> str:
    check_cell(value, label, 60)
    text = _text(value)
    if text is None:
        return default
    found = table.get(text.casefold().rstrip("."))
    if found is None:
        found = table.get(" ".join(text.casefold().replace(".", " ").split()))
    if found is None:
        raise RowProblem(f"unknown {label} {shown(text)} (use {allowed})")
    return found


_INTERVAL_SEEN: dict[object, str] = {}
_STATUS_SEEN: dict[object, str] = {}


def parse_interval(value: object) -> str:
    found = _INTERVAL_SEEN.get(value) if isinstance(value, str) else None
    if found is not None:
        return found
    found = _lookup(value, _INTERVAL_LOOKUP, "monthly", "billing interval",
                   "Måned/monthly, Kvartal/quarterly, Halvår/half-yearly or År/yearly")
    if isinstance(value, str) and len(_INTERVAL_SEEN) < 1000:
        _INTERVAL_SEEN[value] = found
    return found


def parse_status(value: object) -> str:
    found = _STATUS_SEEN.get(value) if isinstance(value, str) else None
    if found is not None:
        return found
    found = _lookup(value, _STATUS_LOOKUP, "active", "status", "Aktiv/active, Opsagt/cancelled or Pause/paused")
    if isinstance(value, str) and len(_STATUS_SEEN) < 1000:
        _STATUS_SEEN[value] = found
    return found


# --- rows -------------------------------------------------------------------------------------------------------

def _is_total_row(cells: list, product_column: int) -> bool:
    product = cells[product_column] if product_column < len(cells) else None
    if isinstance(product, str) and product.strip() and product.strip().casefold() not in TOTAL_WORDS:
        return False
    return any(isinstance(c, str) and c.strip().casefold() in TOTAL_WORDS for c in cells)


def _text_parser(label: str, max_length: int) -> Callable[[object], str | None]:
    def parse(value: object) -> str | None:
        if value.__class__ is not str or _CONTROL.search(value) or len(value) > max_length:
            check_cell(value, label, max_length)
        return _text(value)

    parse.max_length = max_length  # type: ignore[attr-defined] - the column fast path checks the same bound
    return parse


def _start_date(value: object) -> date | None:
    return parse_date(value, "start date")


def _end_date(value: object) -> date | None:
    return parse_date(value, "end date")


# the one rule per column: every cell of a mapped column goes through its parser, in bulk or row by row
_COLUMN_PARSERS: dict[str, Callable[[object], object]] = {
    "customer_number": parse_customer_number, "cvr": parse_cvr,
    "customer_name": _text_parser("customer name", MAX_TEXT["customer_name"]),
    "external_id": _text_parser("subscription id", MAX_TEXT["external_id"]),
    "product": _text_parser("product", MAX_TEXT["product"]), "sku": _text_parser("SKU", MAX_TEXT["sku"]),
    "quantity": parse_quantity, "unit_price": parse_price, "billing_interval": parse_interval,
    "start_date": _start_date, "end_date": _end_date, "status": parse_status,
    "note": _text_parser("note", MAX_TEXT["note"]),
}


def parse_row(row_number: int, cells: list, mapping: dict[str, int]) -> SubscriptionRow:
    """Validate one data row: the rules of each column, then of the row. A row that breaks rules gets every
    reason in `error`, each naming its Excel cell ("G7: quantity -2 is negative"), joined by '; '."""
    width = len(cells)
    get = {name: (cells[col] if col < width else None) for name, col in mapping.items()}
    parsed: dict[str, object] = {}
    problems: list[str] = []
    if all(v.__class__ is CellError and v == UNREADABLE for v in get.values()):
        result = SubscriptionRow(row_number, error=f"row {row_number} cannot be read: one of its cells holds a "
                                                   "number or date far out of range", cells=get)
        result.values = dict.fromkeys((f for f in SUBSCRIPTION_FIELDS if f in mapping), None)
        return result
    for name, col in mapping.items():
        try:
            parsed[name] = _COLUMN_PARSERS[name](get[name])
        except RowProblem as exc:
            problems.append(f"{cell_name(row_number, col)}: {exc}")
            parsed[name] = _PROBLEM
    customer = [parsed.get(k) for k in CUSTOMER_KEYS]
    if all(v is None for v in customer):
        problems.append("no customer number, CVR or customer name")
    if parsed["product"] is None:
        problems.append(f"{cell_name(row_number, mapping['product'])}: product is empty")
    start = parsed["start_date"]
    if start is None:
        problems.append(f"{cell_name(row_number, mapping['start_date'])}: start date is empty")
    end = parsed.get("end_date")
    if end.__class__ is date and start.__class__ is date and end < start:
        problems.append(f"{cell_name(row_number, mapping['end_date'])}: end date {danish_date(end)} is before "
                        f"start date {danish_date(start)}")
    result = SubscriptionRow(row_number)
    if problems:
        result.error = "; ".join(problems)
        result.cells = get
    keep = {name: (None if value is _PROBLEM else value) for name, value in parsed.items()}
    result.customer_number, result.cvr, result.customer_name = (keep.get(k) for k in CUSTOMER_KEYS)
    result.values = {f: keep[f] for f in SUBSCRIPTION_FIELDS if f in keep}
    return result


_PROBLEM = object()  # a cell its parser rejected: the row goes to parse_row for every reason
VALIDATE_CHUNK_ROWS = 5000
_CACHE_LIMIT = 200_000  # distinct cells remembered per column (subscription ids are all distinct)


def _shareable(kinds: set[type], distinct: set) -> bool:
    """Whether equal cells may share one parse: True == 1 == 1.0 and -0.0 == 0.0 may not."""
    return not (bool in kinds or (int in kinds and float in kinds) or (float in kinds and 0.0 in distinct)
                or CellError in kinds)


class _ColumnParser:
    """`parser` over one column, chunk by chunk. Where cells repeat (products, dates, intervals, statuses),
    each distinct cell is parsed once for the whole sheet; where they mostly do not (subscription ids,
    prices), remembering them costs more than parsing, so after a chunk that shows it, cells are parsed as
    they come. Text is only stripped, which is cheaper than looking it up."""

    __slots__ = ("chunks", "direct", "kinds", "parsed", "parser", "text_limit")

    def __init__(self, parser: Callable[[object], object]):
        self.parser = parser
        self.text_limit: int | None = getattr(parser, "max_length", None)
        self.parsed: dict = {}
        self.kinds: set[type] = set()
        self.direct = False
        self.chunks = 0

    def __call__(self, values: list | tuple) -> list:
        kinds = set(map(type, values))
        if self.text_limit is not None and kinds == {str} and max(map(len, values)) <= self.text_limit and (
                _CONTROL.search("".join(values)) is None):  # the usual text chunk: only strip it
            return [value.strip() or None for value in values]
        if self.direct:
            return [self._one(value) for value in values]
        distinct = set(values)
        if not _shareable(kinds, distinct):  # keep such a chunk cell by cell
            return [self._one(value) for value in values]
        if not kinds <= self.kinds:
            merged = self.kinds | kinds
            if not _shareable(merged, distinct):
                self.parsed, merged = {}, kinds
            self.kinds = merged
        if len(self.parsed) > _CACHE_LIMIT:
            self.parsed = {}
        parsed = self.parsed
        missing = distinct.difference(parsed) if parsed else distinct
        parsed.update({value: self._one(value) for value in missing})
        # mostly new cells in a chunk after the first (where everything is new): the cache does not pay
        self.chunks += 1
        self.direct = self.chunks > 1 and len(missing) > len(values) // 2
        return list(map(parsed.__getitem__, values))

    def _one(self, value: object) -> object:
        try:
            return self.parser(value)
        except RowProblem:
            return _PROBLEM


def _is_data(product: object) -> bool:
    return product.__class__ is str and product.strip().casefold() not in TOTAL_WORDS and bool(product.strip())


def _padded(row: list, width: int) -> list:
    return row if len(row) >= width else [*row, *([None] * (width - len(row)))]


def _positions(values: list, bad: object) -> list[int]:
    return [i for i, v in enumerate(values) if v is bad] if bad in values else []


class RowValidator:
    """Validates a sheet's rows chunk by chunk (blank and total rows left out), column by column.

    Each column's distinct cells go through their parser once for the whole sheet; a row with any
    problem is validated again by `parse_row`, which collects every reason.
    """

    def __init__(self, mapping: dict[str, int]):
        self.mapping = mapping
        self.product_column = mapping["product"]
        self.width = max(mapping.values()) + 1
        self.columns = {name: _ColumnParser(_COLUMN_PARSERS[name]) for name in mapping}
        self._products: dict[str, bool] = {}

    def validate(self, raw_rows: list[list], first_row: int) -> list[SubscriptionRow]:
        """The data rows among `raw_rows`, whose first is Excel row `first_row`, validated."""
        product_column, width = self.product_column, self.width
        shortest = min(map(len, raw_rows), default=0)
        if shortest > product_column and all(map(self._has_product, map(itemgetter(product_column), raw_rows))):
            # the usual chunk: every row has a product (no blank or total rows)
            numbers = list(range(first_row, first_row + len(raw_rows)))
            cells = raw_rows if shortest >= width else [_padded(row, width) for row in raw_rows]
            return self._validate(numbers, cells)
        numbers = []
        cells = []
        for offset, row in enumerate(raw_rows):
            if not _is_data(row[product_column] if product_column < len(row) else None) and (
                    is_blank(row) or _is_total_row(row, product_column)):
                continue
            numbers.append(first_row + offset)
            cells.append(_padded(row, width))
        return self._validate(numbers, cells) if cells else []

    def _has_product(self, product: object) -> bool:
        """`_is_data`, remembered per product text (a sheet names a few dozen products)."""
        known = self._products.get(product) if product.__class__ is str else None
        if known is None:
            known = _is_data(product)
            if product.__class__ is str and len(self._products) < _CACHE_LIMIT:
                self._products[product] = known
        return known

    def _validate(self, numbers: list[int], cells: list[list]) -> list[SubscriptionRow]:
        # one transpose in C instead of a pass over the rows per column; rows are at least `width` long
        columns = list(zip(*cells, strict=False))
        parsed = {name: self.columns[name](columns[col]) for name, col in self.mapping.items()}
        bad: set[int] = set()
        for values in parsed.values():
            bad.update(_positions(values, _PROBLEM))
        for name in ("product", "start_date"):
            bad.update(_positions(parsed[name], None))
        nobody = [None] * len(cells)
        keys = [parsed.get(k, nobody) for k in CUSTOMER_KEYS]
        suspects = _positions(keys[0], None) if "customer_number" in parsed else range(len(cells))
        bad.update(i for i in suspects if keys[0][i] is None and keys[1][i] is None and keys[2][i] is None)
        if "end_date" in parsed:
            starts = parsed["start_date"]
            bad.update(i for i, end in enumerate(parsed["end_date"]) if end is not None and end is not _PROBLEM
                       and starts[i].__class__ is date and end < starts[i])
        fields = [f for f in SUBSCRIPTION_FIELDS if f in parsed]
        values = map(dict, map(zip, repeat(fields), zip(*(parsed[f] for f in fields), strict=True)))
        out = list(map(SubscriptionRow, numbers, *keys, values))
        for i in bad:
            out[i] = parse_row(numbers[i], cells[i], self.mapping)
        return out


def iter_rows(table: SheetTable, chunk: int = VALIDATE_CHUNK_ROWS, *,
              first_chunk: int | None = None) -> Iterator[list[SubscriptionRow]]:
    """The table's data rows, validated, a chunk of raw rows at a time (so a caller can write while the next
    chunk is validated, and the raw cells of one chunk at a time exist); `first_chunk` rows come first."""
    validator = RowValidator(table.mapping)
    first_row = table.first_row
    size = first_chunk or chunk
    while raw := list(islice(table.rows, size)):
        yield validator.validate(raw, first_row)
        first_row += len(raw)
        size = chunk


def parse_rows(table: SheetTable) -> list[SubscriptionRow]:
    """Every data row of the table (blank and total rows left out), validated."""
    return [row for rows in iter_rows(table) for row in rows]


@dataclass
class OpenedExport:
    """A sheet read and its header mapped, its rows not yet validated: what `read_export` validates."""

    file_name: str
    sheet_names: list[str]
    table: SheetTable

    def parsed(self, rows: list[SubscriptionRow]) -> ParsedExport:
        t = self.table
        return ParsedExport(self.file_name, t.sheet, self.sheet_names, t.header_row, t.headers, t.mapping, rows)


def open_export(source: Path | str | bytes, *, file_name: str | None = None, sheet: str | None = None,
                columns: dict[str, int | None] | None = None) -> OpenedExport:
    """Open (in a child process: lib.excel_reader), pick the sheet, map the columns; the rows are read as the
    table is consumed. Bad files raise InputError (nothing read)."""
    name = file_name or (Path(source).name if not isinstance(source, bytes) else "upload.xlsx")
    sheet_names, table = read_table(source, HEADER_SPEC, file_name=name, sheet=sheet, preferred=PREFERRED_SHEET,
                                    columns=columns, fallback_first=bool(columns))
    return OpenedExport(name, sheet_names, table)


def read_export(source: Path | str | bytes, *, file_name: str | None = None, sheet: str | None = None,
                columns: dict[str, int | None] | None = None) -> ParsedExport:
    """Open, pick the sheet, map the columns, validate every row. Bad files raise InputError (nothing read)."""
    opened = open_export(source, file_name=file_name, sheet=sheet, columns=columns)
    rows = parse_rows(opened.table)
    return opened.parsed(rows)


def header_candidates(source: Path | str | bytes, *, file_name: str | None = None,
                      sheet: str | None = None) -> tuple[list[str], str, list[str], dict[str, int]]:
    """For correcting the mapping by hand when no header was recognised: the sheets, the sheet shown
    (`sheet`, else "Abonnementer", else the first), the texts of its first non-blank row and what they map to."""
    names, chosen, headers = read_first_row(source, HEADER_SPEC, file_name=file_name, sheet=sheet,
                                            preferred=PREFERRED_SHEET)
    return names, chosen, headers, map_headers(headers, HEADER_SPEC)
