"""The matcher's rules, one test each, and a small run of the benchmark generator."""

from __future__ import annotations

import dataclasses

from bench.bench_matching import evaluate
from bench.matching_dataset import make_dataset
from lib.cvr import make_cvr
from lib.matching import MatchRecord, MatchSettings, judge_single, match_records

CVR_A = make_cvr(1)
CVR_B = make_cvr(2)


def rec(key: object, name: str, cvr: str | None = None, zip: str | None = None, city: str | None = None):
    return MatchRecord(key=key, name=name, cvr=cvr, zip=zip, city=city)


def test_cvr_decides_even_when_names_differ() -> None:
    """A valid CVR on both sides is a confident match, in any format, whatever the names."""
    spaced = f"DK {CVR_A[:2]} {CVR_A[2:4]} {CVR_A[4:6]} {CVR_A[6:]}"
    result = match_records([rec(1, "Hansen VVS ApS", CVR_A)], [rec("e7", "HVS Holding", spaced), rec("e8", "Hansen VVS")])
    assert result[1].status == "confident"
    assert result[1].match.key == "e7"
    assert f"CVR {CVR_A} agrees" in result[1].match.reasons


def test_cvr_claimed_by_two_customers_is_ambiguous_for_both() -> None:
    """Two Hub customers with the same CVR cannot both have the outside record."""
    result = match_records([rec(1, "Hansen VVS", CVR_A), rec(2, "Hansen VVS Syd", CVR_A)], [rec("e7", "Hansen", CVR_A)])
    assert result[1].status == result[2].status == "ambiguous"
    assert "as well" in result[1].reason


def test_cvr_conflict_vetoes_a_name_match() -> None:
    """Identical names with two different valid CVRs are different companies: not even a candidate."""
    result = match_records([rec(1, "Hansen VVS ApS", CVR_A)], [rec("e7", "Hansen VVS ApS", CVR_B)])
    assert result[1].status == "none"
    assert result[1].candidates == ()


def test_cvr_missing_or_invalid_on_one_side_falls_back_to_the_name() -> None:
    """An invalid CVR counts as missing; the name then decides."""
    result = match_records([rec(1, "Østergaard & Søn A/S", "12345678")], [rec("e7", "Oestergaard og Soen ApS", CVR_B)])
    assert result[1].status == "confident"
    assert result[1].match.key == "e7"


def test_cvr_taken_record_is_not_given_to_another_customer_by_name() -> None:
    """An outside record linked by CVR to one customer is not a confident name match for another."""
    hub = [rec(1, "Hansen VVS", CVR_A), rec(2, "Hansen VVS")]
    result = match_records(hub, [rec("e7", "Hansen VVS ApS", CVR_A)])
    assert result[1].status == "confident"
    assert result[2].status == "ambiguous"
    assert "linked by CVR" in result[2].reason


def test_margin_over_runner_up_is_required() -> None:
    """Two near-equal candidates make the result ambiguous; a clear leader is confident."""
    hub = [rec(1, "Nordisk Tagdækning ApS")]
    close = match_records(hub, [rec("e1", "Nordisk Tagdaekning"), rec("e2", "Nordisk Tagdækning A/S")])
    assert close[1].status == "ambiguous"
    assert {c.key for c in close[1].candidates} == {"e1", "e2"}
    assert "runner-up" in close[1].reason
    clear = match_records(hub, [rec("e1", "Nordisk Tagdaekning"), rec("e2", "Nordlys Tagdækning")])
    assert clear[1].status == "confident"
    assert clear[1].match.key == "e1"
    assert clear[1].candidates[0] == clear[1].match


def test_threshold_and_floor() -> None:
    """Below name_threshold is at best ambiguous; below ambiguous_floor is none."""
    hub = [rec(1, "Holst Maskinstation")]
    typo = match_records(hub, [rec("e1", "Holst Maskinstation")], MatchSettings(name_threshold=100.1))
    assert typo[1].status == "ambiguous"
    assert match_records(hub, [rec("e1", "Bakke Revision")])[1].status == "none"


def test_a_word_only_one_name_has_blocks_confidence() -> None:
    """"Hansen VVS" and "Hansen VVS Service" are different companies, however high the score."""
    hub = [rec(1, "Kristoffersen og Vestergaard Ventilation ApS")]
    result = match_records(hub, [rec("e1", "Kristoffersen & Vestergaard Ventilation Nord ApS")])
    assert result[1].candidates[0].score >= MatchSettings().name_threshold
    assert result[1].status == "ambiguous"
    assert "'nord'" in result[1].reason
    assert match_records(hub, [rec("e1", "Kristofersen & Vestergaard Ventilation")])[1].status == "confident"


def test_one_outside_record_goes_to_one_customer() -> None:
    """Two customers wanting the same record: a clearly better claim wins, the other is ambiguous."""
    hub = [rec(1, "Nordisk Tagdækning", zip="8000"), rec(2, "Nordisk Tagdaekning ApS")]
    result = match_records(hub, [rec("e1", "Nordisk Tagdækning A/S", zip="8000")])
    assert result[1].status == "confident"
    assert result[2].status == "ambiguous"
    assert "claimed as well by customer 1" in result[2].reason


def test_equal_claims_leave_both_customers_ambiguous() -> None:
    """Duplicates in the Hub: neither gets the record."""
    hub = [rec(1, "Nordisk Tagdækning"), rec(2, "Nordisk Tagdaekning ApS")]
    result = match_records(hub, [rec("e1", "Nordisk Tagdækning A/S")])
    assert result[1].status == result[2].status == "ambiguous"
    assert len({r.match for r in result.values()}) == 1  # both None


def test_zip_breaks_a_tie() -> None:
    """Same name in two towns: the one in the customer's zip wins."""
    hub = [rec(1, "Hansen VVS ApS", zip="8000", city="Aarhus C")]
    outside = [rec("e1", "Hansen VVS", zip="5000", city="Odense C"), rec("e2", "Hansen VVS A/S", zip="8000")]
    result = match_records(hub, outside)
    assert result[1].status == "confident"
    assert result[1].match.key == "e2"
    assert "zip 8000 agrees" in result[1].match.reasons


def test_city_breaks_a_tie_when_a_zip_is_missing() -> None:
    """Without zips, the city (normalised: Århus = Aarhus) does the same."""
    hub = [rec(1, "Hansen VVS ApS", city="Århus")]
    outside = [rec("e1", "Hansen VVS", city="Odense"), rec("e2", "Hansen VVS A/S", city="Aarhus")]
    assert match_records(hub, outside)[1].match.key == "e2"


def test_same_name_in_another_town_is_not_confident() -> None:
    """Zips that differ keep a name-only match from being confident (another company of the same name)."""
    result = match_records([rec(1, "Hansen VVS ApS", zip="8000")], [rec("e1", "Hansen VVS ApS", zip="5000")])
    assert result[1].status == "ambiguous"
    assert "zip 8000 differs from 5000" in result[1].reason
    relaxed = MatchSettings(location_conflict_blocks=False)
    assert match_records([rec(1, "Hansen VVS", zip="8000")], [rec("e1", "Hansen VVS", zip="5000")], relaxed)[
        1].status == "confident"


def test_judge_single() -> None:
    """cvrapi.dk's one answer is accepted only when it is the same company."""
    hub = rec(1, "Østergaard & Søn", zip="8000")
    assert judge_single(hub, rec(CVR_A, "ØSTERGAARD & SØN A/S", CVR_A, "8000")).status == "confident"
    assert judge_single(hub, rec(CVR_A, "Østergaard & Søn Holding ApS", CVR_A, "8000")).status != "confident"
    assert judge_single(hub, rec(CVR_A, "Vestergaard & Søn ApS", CVR_A, "8000")).status != "confident"
    assert judge_single(hub, rec(CVR_A, "Bakke Revision", CVR_A)).status == "none"


def test_candidates_are_capped_and_explained() -> None:
    """At most top_k candidates, each with its reasons; every customer gets a result."""
    hub = [rec(1, "Nordisk Tag"), rec(2, "Zebra Zoo")]
    outside = [rec(f"e{i}", f"Nordisk Tag {suffix}") for i, suffix in enumerate(["ApS", "A/S", "IVS", "I/S", "K/S", "P/S"])]
    result = match_records(hub, outside, MatchSettings(top_k=3))
    assert set(result) == {1, 2}
    assert len(result[1].candidates) == 3
    assert all(c.reasons and c.reasons[0].startswith("name score") for c in result[1].candidates)
    assert result[2].status == "none"
    assert match_records([], outside) == {}
    assert match_records(hub, [])[1].status == "none"


def test_generated_benchmark_small_on_both_paths() -> None:
    """The generator's labelled data meets the quality targets, with blocking and with all pairs compared."""
    data = make_dataset(600, seed=3)
    assert data.truth and len(data.outside) == 600
    blocked = evaluate(data, match_records(data.hub, data.outside, MatchSettings(full_compare_limit=0)))
    full = evaluate(data, match_records(data.hub, data.outside, MatchSettings()))
    for quality in (blocked, full):
        assert quality.precision >= 0.995
        assert quality.recall >= 0.95
    assert abs(blocked.recall - full.recall) < 0.01


def test_settings_are_a_frozen_dataclass_with_defaults() -> None:
    """Thresholds are settings; changing one makes a new object."""
    settings = MatchSettings()
    assert settings.ambiguous_floor < settings.name_threshold <= 100
    assert dataclasses.replace(settings, margin=0).margin == 0
