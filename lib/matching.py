"""Customer matching: link Hub customers to records of another system by CVR, then by name.

Rules, in order (docs/MATCHING.md explains them and how the defaults were measured):
1. A valid CVR found on both sides decides, whatever the names say; a CVR claimed by two Hub customers is
   ambiguous for both.
2. Two valid CVRs that differ veto the pair: it is never a name candidate.
3. Otherwise names are compared in canonical form (lib.company_names), with a bonus when zip or city agree.
   Confident needs: name score ≥ `name_threshold`, a lead of ≥ `margin` over the runner-up, no word that
   only one of the two names has, no zip/city contradiction, and the outside record not claimed by another
   customer with a better (or equal) claim.
4. Candidates scoring at least `ambiguous_floor` that are not confident make the result ambiguous; below
   that the result is none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from lib.company_names import normalize_company_name
from lib.cvr import normalize_cvr

STOPWORDS = frozenset({"og", "and", "the", "i", "v"})


@dataclass(frozen=True)
class MatchRecord:
    """One customer as a system holds it; `key` is that system's id for it."""

    key: object
    name: str
    cvr: str | None = None
    zip: str | None = None
    city: str | None = None


@dataclass(frozen=True)
class Candidate:
    """An outside record considered for a Hub customer. `score` is the name score 0..100 (100 for a CVR match)."""

    key: object
    name: str
    score: float
    reasons: tuple[str, ...]
    rank: float = 0.0  # score plus the location bonus: what candidates are ordered and compared by
    by_cvr: bool = False


@dataclass(frozen=True)
class MatchResult:
    """The engine's answer for one Hub customer."""

    hub_key: object
    status: str  # "confident" | "ambiguous" | "none"
    match: Candidate | None
    candidates: tuple[Candidate, ...]
    reason: str


@dataclass(frozen=True)
class MatchSettings:
    """Thresholds of the matcher; defaults measured with bench/bench_matching.py (see docs/MATCHING.md)."""

    name_threshold: float = 90.0
    margin: float = 5.0
    ambiguous_floor: float = 85.0
    top_k: int = 5
    location_bonus: float = 5.0  # zip (city when a zip is missing) agreeing adds this, differing subtracts it
    location_conflict_blocks: bool = True  # differing zips (or cities) keep a name-only match from being confident
    unshared_words_block: bool = True  # a word only one name has ("Service") keeps the pair from being confident
    word_edits: int = 1  # a word this many edits from a word of the other name counts as shared (a typo)
    long_word_edits: int = 2  # the same for words of 8 letters or more
    single_exact_words: bool = True  # judge_single allows no typo: a search's one answer is merely the most similar
    sort_words: bool = False  # score "b a" against "a b" as equal (token_sort_ratio) instead of plain ratio
    block_tokens: int = 2  # each name is blocked on its rarest words; 2 survive a typo in any one word
    full_compare_limit: int = 4_000_000  # below this many pairs, compare all pairs instead of blocking


@dataclass
class _Side:
    records: Sequence[MatchRecord]
    names: list[str]  # canonical names
    keys: list[str]  # what is scored: the canonical names, words sorted when settings.sort_words
    cvr_codes: np.ndarray  # int64, -1 when missing or invalid
    zip_codes: np.ndarray  # int64, -1 when missing
    city_codes: np.ndarray  # int64, -1 when missing
    cvrs: list[str | None]


_CVR_WEIGHTS = (2, 7, 6, 5, 4, 3, 2, 1)
_CVR_CLEAN = str.maketrans("", "", " -.,/:")


def _cvr_of(value: str | None) -> str | None:
    """lib.cvr.normalize_cvr with a quick path for the common plain forms (stdnum is slow on 40,000 values)."""
    if not value:
        return None
    text = str(value).translate(_CVR_CLEAN).upper()
    if text.startswith("DK"):
        text = text[2:]
    if len(text) == 8 and text.isdigit() and text[0] != "0":
        return text if sum(w * int(d) for w, d in zip(_CVR_WEIGHTS, text, strict=True)) % 11 == 0 else None
    return normalize_cvr(value)


def _prepare(
    records: Sequence[MatchRecord], cvr_ids: dict[str, int], place_ids: dict[str, int], sort_words: bool
) -> _Side:
    names = [normalize_company_name(r.name) for r in records]
    cvrs = [_cvr_of(r.cvr) for r in records]

    def code(value: str | None, ids: dict[str, int]) -> int:
        return -1 if not value else ids.setdefault(value, len(ids))

    zips = [(r.zip or "").strip().replace(" ", "") or None for r in records]
    cities = [normalize_company_name(r.city) or None if r.city else None for r in records]
    return _Side(
        records=records,
        names=names,
        keys=[" ".join(sorted(n.split())) for n in names] if sort_words else names,
        cvr_codes=np.array([code(c, cvr_ids) for c in cvrs], dtype=np.int64),
        zip_codes=np.array([code(z and "z" + z, place_ids) for z in zips], dtype=np.int64),
        city_codes=np.array([code(c and "c" + c, place_ids) for c in cities], dtype=np.int64),
        cvrs=cvrs,
    )


def _block_keys(name: str, doc_freq: dict[str, int], block_tokens: int) -> list[str]:
    words = [w for w in set(name.split()) if w not in STOPWORDS] or name.split()
    words.sort(key=lambda w: (doc_freq[w], w))
    keys = words[:block_tokens]
    if len(words) == 1 and len(words[0]) >= 4:  # a lone word with a typo still shares its start or its end
        keys += ["<" + words[0][:4], ">" + words[0][-4:]]
    return keys


def _score_pairs(hub: _Side, outside: _Side, hub_rows: np.ndarray, settings: MatchSettings) -> tuple[np.ndarray, ...]:
    """(hub index, outside index, name score) for every pair worth a look, without an all-pairs matrix."""
    floor = settings.ambiguous_floor
    hub_keys = [hub.keys[i] for i in hub_rows]
    found_h: list[np.ndarray] = []
    found_o: list[np.ndarray] = []
    found_s: list[np.ndarray] = []

    def add_block(h_idx: np.ndarray, o_idx: np.ndarray, queries: list[str], choices: list[str]) -> None:
        workers = -1 if len(queries) * len(choices) > 200_000 else 1
        chunk = max(1, 2_000_000 // max(1, len(choices)))  # bounds the float32 block to ~8 MB
        for start in range(0, len(queries), chunk):
            scores = process.cdist(
                queries[start:start + chunk], choices, scorer=fuzz.ratio, score_cutoff=floor,
                dtype=np.float32, workers=workers,
            )
            rows, cols = np.nonzero(scores)
            found_h.append(h_idx[start + rows])
            found_o.append(o_idx[cols])
            found_s.append(scores[rows, cols])

    all_outside = np.arange(len(outside.keys))
    if len(hub_rows) * len(outside.keys) <= settings.full_compare_limit:
        add_block(hub_rows, all_outside, hub_keys, outside.keys)
    else:
        doc_freq: dict[str, int] = defaultdict(int)
        for name in hub_keys + outside.keys:
            for word in set(name.split()):
                doc_freq[word] += 1
        outside_blocks: dict[str, list[int]] = defaultdict(list)
        for o, name in enumerate(outside.keys):
            for key in _block_keys(name, doc_freq, settings.block_tokens):
                outside_blocks[key].append(o)
        hub_blocks: dict[str, list[int]] = defaultdict(list)
        for h, name in zip(hub_rows.tolist(), hub_keys, strict=True):
            for key in _block_keys(name, doc_freq, settings.block_tokens):
                if key in outside_blocks:
                    hub_blocks[key].append(h)
        small_h: list[int] = []
        small_o: list[int] = []
        for key, hs in hub_blocks.items():
            os_ = outside_blocks[key]
            if len(hs) * len(os_) <= 64:  # many tiny blocks: collect them and score in one cpdist call
                small_h.extend(np.repeat(hs, len(os_)).tolist())
                small_o.extend(os_ * len(hs))
            else:
                add_block(np.array(hs), np.array(os_), [hub.keys[h] for h in hs], [outside.keys[o] for o in os_])
        if small_h:
            sh, so = np.array(small_h), np.array(small_o)
            scores = process.cpdist(
                [hub.keys[h] for h in small_h], [outside.keys[o] for o in small_o], scorer=fuzz.ratio,
                score_cutoff=floor, dtype=np.float32, workers=-1,
            )
            keep = scores > 0
            found_h.append(sh[keep])
            found_o.append(so[keep])
            found_s.append(scores[keep])
    if not found_h:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    h_all, o_all, s_all = np.concatenate(found_h), np.concatenate(found_o), np.concatenate(found_s)
    _, first = np.unique(h_all.astype(np.int64) * len(outside.keys) + o_all, return_index=True)
    return h_all[first], o_all[first], s_all[first]


def _unshared_words(a: str, b: str, edits: int, long_edits: int) -> list[str]:
    """Words of `a` with no near-identical word in `b` (nor glued into it): "service" in "hansen vvs service"."""
    b_words = [w for w in b.split() if w not in STOPWORDS]
    b_glued = b.replace(" ", "")
    unshared = []
    for word in a.split():
        if word in STOPWORDS or word in b_words or word in b_glued:
            continue
        limit = long_edits if len(word) >= 8 else edits
        if not any(OSA.distance(word, other, score_cutoff=limit) <= limit for other in b_words):
            unshared.append(word)
    return unshared


def _location_words(hub_side: _Side, out_side: _Side, h: int, o: int) -> str:
    """Why zip (else city) agrees or not, for a pair where both sides have it."""
    hub_rec, out_rec = hub_side.records[h], out_side.records[o]
    if hub_side.zip_codes[h] >= 0 and out_side.zip_codes[o] >= 0:
        same = hub_side.zip_codes[h] == out_side.zip_codes[o]
        return f"zip {hub_rec.zip} agrees" if same else f"zip {hub_rec.zip} differs from {out_rec.zip}"
    same = hub_side.city_codes[h] == out_side.city_codes[o]
    return f"city {hub_rec.city} agrees" if same else f"city {hub_rec.city} differs from {out_rec.city}"


def _candidate(outside: _Side, o: int, score: float, rank: float, reasons: list[str], by_cvr: bool = False):
    rec = outside.records[o]
    return Candidate(key=rec.key, name=rec.name, score=round(float(score), 1), reasons=tuple(reasons),
                     rank=round(float(rank), 1), by_cvr=by_cvr)


def match_records(
    hub: Sequence[MatchRecord], outside: Sequence[MatchRecord], settings: MatchSettings | None = None
) -> dict[object, MatchResult]:
    """For each Hub customer: a confident match, an ambiguous set of candidates, or none."""
    s = settings or MatchSettings()
    cvr_ids: dict[str, int] = {}
    place_ids: dict[str, int] = {}
    hub_side = _prepare(hub, cvr_ids, place_ids, s.sort_words)
    out_side = _prepare(outside, cvr_ids, place_ids, s.sort_words)
    results: dict[object, MatchResult] = {}

    # 1. CVR agreement decides.
    outside_by_cvr: dict[int, list[int]] = defaultdict(list)
    for o, code in enumerate(out_side.cvr_codes.tolist()):
        if code >= 0:
            outside_by_cvr[code].append(o)
    hub_by_cvr: dict[int, list[int]] = defaultdict(list)
    for h, code in enumerate(hub_side.cvr_codes.tolist()):
        if code in outside_by_cvr:
            hub_by_cvr[code].append(h)
    claimed_by_cvr: dict[int, object] = {}  # outside index → Hub key that holds it by CVR
    for code, hs in hub_by_cvr.items():
        outs = outside_by_cvr[code]
        for o in outs:
            claimed_by_cvr[o] = hub[hs[0]].key if len(hs) == 1 else None
        for h in hs:
            results[hub[h].key] = _decide_by_cvr(hub_side, out_side, h, hs, outs, s)

    # 2–3. Names, for everyone CVR did not decide; pairs with two different valid CVRs are vetoed.
    open_rows = np.array([h for h in range(len(hub)) if hub[h].key not in results], dtype=np.int64)
    ph, po, ps = _score_pairs(hub_side, out_side, open_rows, s) if len(open_rows) and len(outside) else (np.zeros(0, int),) * 3
    hc, oc = hub_side.cvr_codes[ph], out_side.cvr_codes[po]
    keep = ~((hc >= 0) & (oc >= 0) & (hc != oc))
    ph, po, ps = ph[keep], po[keep], ps[keep].astype(np.float64)
    hz, oz = hub_side.zip_codes[ph], out_side.zip_codes[po]
    hcity, ocity = hub_side.city_codes[ph], out_side.city_codes[po]
    zip_known = (hz >= 0) & (oz >= 0)
    city_known = (hcity >= 0) & (ocity >= 0)
    agrees = np.where(zip_known, hz == oz, city_known & (hcity == ocity))
    conflicts = np.where(zip_known, hz != oz, city_known & (hcity != ocity))
    rank = ps + s.location_bonus * (agrees.astype(np.float64) - conflicts)
    order = np.lexsort((-rank, ph))
    ph, po, ps, rank, agrees, conflicts = (a[order] for a in (ph, po, ps, rank, agrees, conflicts))
    group_start = np.flatnonzero(np.r_[True, ph[1:] != ph[:-1]]) if len(ph) else np.zeros(0, dtype=np.int64)
    position = np.arange(len(ph)) - np.repeat(group_start, np.diff(np.r_[group_start, len(ph)]))
    top = position < max(s.top_k, 2)  # the runner-up is needed for the margin even when top_k is 1
    ph, po, ps, rank, agrees, conflicts, position = (
        a[top].tolist() for a in (ph, po, ps, rank, agrees, conflicts, position))

    proposals: dict[int, list[tuple[float, int]]] = defaultdict(list)  # outside index → [(rank, hub index)]
    blockers: dict[int, str | None] = {}
    rows_of: dict[int, range] = {}
    n = len(ph)
    for start in (i for i in range(n) if position[i] == 0):
        end = start + 1
        while end < n and position[end] != 0:
            end += 1
        h, best = ph[start], po[start]
        rows_of[h] = range(start, min(end, start + s.top_k))
        runner_up = rank[start + 1] if end - start > 1 else None
        blocker = _why_not_confident(hub_side, out_side, h, best, ps[start], rank[start], runner_up, conflicts[start],
                                     claimed_by_cvr, s)
        blockers[h] = blocker
        if blocker is None:
            proposals[best].append((rank[start], h))

    def candidates_of(h: int, limit: int) -> tuple[Candidate, ...]:
        cands = []
        for i in rows_of[h][:limit]:
            o = po[i]
            reasons = [f"name score {ps[i]:.1f}"]
            if agrees[i] or conflicts[i]:
                reasons.append(_location_words(hub_side, out_side, h, o))
            if o in claimed_by_cvr:
                reasons.append("already linked by CVR")
            cands.append(_candidate(out_side, o, ps[i], rank[i], reasons))
        return tuple(cands)

    # One outside record, one customer: the best claim wins by a margin, else every claimant is ambiguous.
    lost: dict[int, str] = {}
    for o, claims in proposals.items():
        if len(claims) < 2:
            continue
        claims.sort(reverse=True)
        winner_clear = claims[0][0] - claims[1][0] >= s.margin
        for pos, (_, h) in enumerate(claims):
            if pos == 0 and winner_clear:
                continue
            rival = hub[claims[1 if pos == 0 else 0][1]].key
            lost[h] = f"outside record {outside[o].key} is claimed as well by customer {rival}"

    for h in range(len(hub)):
        key = hub[h].key
        if key in results:
            continue
        if h not in blockers:
            results[key] = MatchResult(key, "none", None, (), "no outside record has a similar name")
            continue
        blocker = blockers[h] or lost.get(h)
        if blocker is None:
            cands = candidates_of(h, 2)  # the winner and the runner-up it beat by the margin
            best = cands[0]
            results[key] = MatchResult(key, "confident", best, cands, f"name matches: {', '.join(best.reasons)}")
        else:
            results[key] = MatchResult(key, "ambiguous", None, candidates_of(h, s.top_k), f"not confident: {blocker}")
    return results


def _decide_by_cvr(hub_side: _Side, out_side: _Side, h: int, hs: list[int], outs: list[int], s: MatchSettings) -> MatchResult:
    hub_rec = hub_side.records[h]
    cvr = hub_side.cvrs[h]
    scores = [fuzz.ratio(hub_side.keys[h], out_side.keys[o]) for o in outs]
    order = sorted(range(len(outs)), key=lambda i: -scores[i])
    cands = tuple(
        _candidate(out_side, outs[i], 100.0, 100.0, [f"CVR {cvr} agrees", f"name score {scores[i]:.1f}"],
                   by_cvr=True)
        for i in order
    )
    if len(hs) > 1:
        others = ", ".join(str(hub_side.records[x].key) for x in hs if x != h)
        return MatchResult(hub_rec.key, "ambiguous", None, cands, f"CVR {cvr} is held by customer(s) {others} as well")
    if len(outs) == 1:
        return MatchResult(hub_rec.key, "confident", cands[0], cands, f"CVR {cvr} agrees")
    if scores[order[0]] - scores[order[1]] >= s.margin:
        return MatchResult(hub_rec.key, "confident", cands[0], cands,
                           f"CVR {cvr} agrees with {len(outs)} outside records; the name decides between them")
    return MatchResult(hub_rec.key, "ambiguous", None, cands,
                       f"CVR {cvr} agrees with {len(outs)} outside records with similar names")


def _why_not_confident(
    hub_side: _Side, out_side: _Side, h: int, o: int, score: float, rank: float, runner_up: float | None, conflict: bool,
    claimed_by_cvr: dict[int, object], s: MatchSettings,
) -> str | None:
    """The first rule that keeps the best candidate from being confident, or None."""
    if score < s.name_threshold:
        return f"best name score {score:.1f} is below {s.name_threshold:g}"
    if runner_up is not None and rank - runner_up < s.margin:
        return f"the runner-up is within {s.margin:g} points ({rank:.1f} vs {runner_up:.1f})"
    if o in claimed_by_cvr:
        holder = claimed_by_cvr[o]
        return f"outside record {out_side.records[o].key} is linked by CVR to " + (
            f"customer {holder}" if holder is not None else "other customers")
    hub_name, out_name = hub_side.names[h], out_side.names[o]
    if s.unshared_words_block and hub_side.keys[h] != out_side.keys[o]:
        extra = _unshared_words(hub_name, out_name, s.word_edits, s.long_word_edits) + _unshared_words(
            out_name, hub_name, s.word_edits, s.long_word_edits)
        if extra:
            return f"the word(s) {', '.join(repr(w) for w in extra)} appear in only one of the names"
    if s.location_conflict_blocks and conflict:
        return _location_words(hub_side, out_side, h, o)
    return None


def judge_single(hub: MatchRecord, outside: MatchRecord, settings: MatchSettings | None = None) -> MatchResult:
    """Is `outside` (e.g. cvrapi.dk's one answer to a name search) the same company as `hub`?

    With `single_exact_words` (the default) every word must agree after normalisation: a search engine answers
    with the most similar company, so "Vestergaard & Søn" for "Østergaard & Søn" must not pass as a typo.
    """
    s = settings or MatchSettings()
    if s.single_exact_words:
        s = replace(s, word_edits=0, long_word_edits=0)
    return match_records([hub], [outside], s)[hub.key]
