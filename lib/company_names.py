"""Danish company names: one canonical form so that two systems' spellings of a name compare equal."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from cleanco.termdata import terms_by_country

# cleanco knows the Danish forms with a slash or dots but misses IVS, ApS and the written-out words.
DANISH_LEGAL_FORMS: tuple[str, ...] = (
    *terms_by_country["Denmark"],
    "aps", "ap/s", "ivs", "i.v.s.", "a.s.", "a.s", "a / s", "a/s.", "as/", "a.m.b.a", "f.m.b.a", "s.m.b.a",
    "anpartsselskab", "anpartsselskabet", "aktieselskab", "aktieselskabet", "interessentskab",
    "interessentskabet", "kommanditselskab", "kommanditselskabet", "partnerselskab", "partnerselskabet",
    "iværksætterselskab", "iværksætterselskabet", "andelsselskab", "andelsselskabet",
    "andelsselskab med begrænset ansvar", "selskab med begrænset ansvar", "enkeltmandsvirksomhed",
)

# Foreign forms seen on Danish invoices; bare words like these only count as a legal form at the end.
TRAILING_LEGAL_FORMS: tuple[str, ...] = (
    "as", "asa", "ab", "gmbh", "g.m.b.h.", "ag", "ltd", "ltd.", "limited", "plc", "inc", "inc.", "llc", "oy", "oyj",
    "bv", "b.v.", "nv", "n.v.",
)

_TRANSLITERATION = str.maketrans({
    "æ": "ae", "ø": "oe", "å": "aa", "ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "&": " og ", "+": " og ",
})


def _form_pattern(forms: tuple[str, ...]) -> str:
    longest_first = sorted({f.lower() for f in forms}, key=len, reverse=True)
    return "|".join(re.escape(f).replace(r"\ /\ ", r"\s*/\s*").replace(r"\ ", r"\s+") for f in longest_first)


# A form is a whole word: not glued to letters or digits on either side ("Aps" yes, "Apsen" no).
_ANYWHERE_FORM = re.compile(rf"(?<![\w])(?:{_form_pattern(DANISH_LEGAL_FORMS)})(?![\w/])")
_TRAILING_FORM = re.compile(rf"(?<![\w])(?:{_form_pattern(TRAILING_LEGAL_FORMS)})[\s.,]*$")
_DEPARTMENT = re.compile(r"(?<=\S)[\s,]*(?:[-–—(,/]\s*)?\b(?:afd|afdeling|filial|c/o)\b\.?.*$")
_NON_WORD = re.compile(r"[^0-9a-z]+")


@lru_cache(maxsize=65536)
def normalize_company_name(name: str | None) -> str:
    """Canonical form: "Østergaard & Søn A/S - afd. Aarhus" → "oestergaard og soen"; "" for None."""
    if not name:
        return ""
    text = unicodedata.normalize("NFC", str(name)).casefold()
    if "afd" in text or "filial" in text or "c/o" in text:
        text = _DEPARTMENT.sub("", text)
    text = _ANYWHERE_FORM.sub(" ", text)
    text = _TRAILING_FORM.sub("", text.strip())
    canonical = _ascii_words(text)
    # A name that is nothing but a legal form ("A/S") keeps its letters rather than becoming empty.
    return canonical or _ascii_words(unicodedata.normalize("NFC", str(name)).casefold())


def _ascii_words(text: str) -> str:
    text = text.translate(_TRANSLITERATION)
    if not text.isascii():  # é → e and friends; the common Nordic letters were translated above
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NON_WORD.sub(" ", text).strip()


def same_name(a: str | None, b: str | None) -> bool:
    """True when both names are non-empty and have the same canonical form."""
    norm_a = normalize_company_name(a)
    return bool(norm_a) and norm_a == normalize_company_name(b)


def name_tokens(name: str | None) -> tuple[str, ...]:
    """The words of the canonical form."""
    return tuple(normalize_company_name(name).split())
