"""Normalisation of Danish company names."""

from __future__ import annotations

import pytest

from lib.company_names import name_tokens, normalize_company_name, same_name

SAME = [
    ("Østergaard & Søn A/S", "Oestergaard og Soen"),
    ("Hansen VVS ApS", "HANSEN VVS APS"),
    ("Hansen VVS ApS", "hansen vvs"),
    ("Hansen VVS ApS", "Hansen VVS A/S"),
    ("Hansen VVS ApS", "Hansen VVS Aps"),
    ("Hansen VVS ApS", "Hansen VVS Anpartsselskab"),
    ("Jensen Tømrer A/S", "Jensen Tømrer A.S."),
    ("Jensen Tømrer A/S", "Jensen Tømrer Aktieselskab"),
    ("Jensen Tømrer A/S", "Jensen Tømrer A / S"),
    ("Nielsen Data IVS", "Nielsen Data"),
    ("Brugsen AMBA", "Brugsen A.M.B.A."),
    ("Fjordens Vand SMBA", "Fjordens Vand S.M.B.A."),
    ("Lokal Energi FMBA", "Lokal Energi"),
    ("Holst & Lind I/S", "Holst og Lind"),
    ("Holst & Lind K/S", "Holst & Lind P/S"),
    ("Århus Auto", "Aarhus Auto"),
    ("Møller  Maskinstation", "Moeller Maskinstation"),
    ("Hansen A/S - afd. Aarhus", "Hansen A/S"),
    ("Hansen A/S (afd. Kolding)", "Hansen"),
    ("Hansen A.S. - afdeling Vejle", "HANSEN"),
    ("Café Ørsted ApS", "Cafe Oersted"),
    ("Jensen-Hansen I/S", "Jensen Hansen"),
    ("ApS Holst", "Holst"),
    ("Nordic Software AB", "Nordic Software"),
]

NOT_SAME = [
    ("Hansen VVS ApS", "Hansen VVS Service ApS"),
    ("Hansen VVS ApS", "Jensen VVS ApS"),
    ("Hansen VVS ApS", "Hansen El ApS"),
    ("Hansen & Søn A/S", "Hansen A/S"),
    ("Apsen Tømrer", "Tømrer"),
    ("Holst & Lind", "Lind & Holst"),
    ("Hansen Holding ApS", "Hansen ApS"),
    (None, None),
    ("", ""),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_same_company_names(a: str, b: str) -> None:
    """Legal form, case, punctuation, &/og, æøå and department suffixes do not make names differ."""
    assert same_name(a, b), (normalize_company_name(a), normalize_company_name(b))


@pytest.mark.parametrize(("a", "b"), NOT_SAME)
def test_different_company_names(a: str | None, b: str | None) -> None:
    """A word that tells two companies apart survives normalisation; empty names are never the same."""
    assert not same_name(a, b)


def test_canonical_form() -> None:
    """The documented example, None, and a name that is only a legal form."""
    assert normalize_company_name("Østergaard & Søn A/S") == "oestergaard og soen"
    assert normalize_company_name(None) == ""
    assert normalize_company_name("A/S") == "a s"
    assert name_tokens("Hansen VVS Service ApS - afd. Odense") == ("hansen", "vvs", "service")


def test_legal_form_inside_a_word_is_kept() -> None:
    """"aps" or "as" inside a word is part of the name, not a legal form."""
    assert normalize_company_name("Apsen Glas") == "apsen glas"
    assert normalize_company_name("Lars Hansen") == "lars hansen"
