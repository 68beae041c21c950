"""Benchmark of the matcher: quality on labelled data, time against one all-pairs cdist, memory, PR curve.

Run: python bench/bench_matching.py [--size 20000] [--seed 7] [--no-plot]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import resource
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.matching_dataset import MatchingDataset, make_dataset  # noqa: E402
from lib.company_names import normalize_company_name  # noqa: E402
from lib.matching import MatchResult, MatchSettings, match_records  # noqa: E402

PLOT_PATH = ROOT / "docs" / "img" / "matching_pr_curve.png"


@dataclasses.dataclass(frozen=True)
class Quality:
    """Counts and rates of one matcher run against the truth."""

    hubs: int
    true_pairs: int
    confident: int
    confident_correct: int
    ambiguous: int
    ambiguous_with_twin: int

    @property
    def precision(self) -> float:
        return self.confident_correct / self.confident if self.confident else 1.0

    @property
    def recall(self) -> float:
        """Confident and correct, over all customers that truly have a twin outside."""
        return self.confident_correct / self.true_pairs if self.true_pairs else 1.0

    @property
    def ambiguous_share(self) -> float:
        return self.ambiguous / self.hubs if self.hubs else 0.0


def evaluate(data: MatchingDataset, results: dict[object, MatchResult]) -> Quality:
    """Compare the matcher's answers with the truth."""
    confident = [r for r in results.values() if r.status == "confident"]
    correct = sum(1 for r in confident if r.match is not None and data.truth.get(r.hub_key) == r.match.key)
    ambiguous = [r for r in results.values() if r.status == "ambiguous"]
    return Quality(
        hubs=len(data.hub), true_pairs=len(data.truth), confident=len(confident), confident_correct=correct,
        ambiguous=len(ambiguous), ambiguous_with_twin=sum(1 for r in ambiguous if r.hub_key in data.truth),
    )


def errors(data: MatchingDataset, results: dict[object, MatchResult], limit: int = 10) -> list[str]:
    """Wrong confident matches, for reading."""
    hub = {r.key: r for r in data.hub}
    out = []
    for r in results.values():
        if r.status == "confident" and r.match is not None and data.truth.get(r.hub_key) != r.match.key:
            h = hub[r.hub_key]
            out.append(f"{h.name!r} ({h.cvr}, {h.zip}) → {r.match.name!r} {r.match.reasons}; twin: "
                       f"{data.truth.get(r.hub_key)} kinds {data.variant_kinds.get(r.hub_key)}")
    return out[:limit]


def time_cdist(data: MatchingDataset, repeats: int = 2) -> float:
    """Best seconds of one rapidfuzz cdist over all name pairs (the yardstick of the performance target)."""
    from rapidfuzz import process

    hub_names = [r.name for r in data.hub]
    outside_names = [r.name for r in data.outside]
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        matrix = process.cdist(hub_names, outside_names, workers=-1, dtype="uint8")
        best = min(best, time.perf_counter() - start)
        del matrix
    return best


def time_matcher(
    data: MatchingDataset, settings: MatchSettings, repeats: int = 3
) -> tuple[dict[object, MatchResult], float, float]:
    """Results, best seconds of cold runs, and peak memory in MB traced during one more run."""
    best = float("inf")
    results: dict[object, MatchResult] = {}
    for _ in range(repeats):
        normalize_company_name.cache_clear()  # the generator warmed it; a real run starts cold
        gc.collect()
        start = time.perf_counter()
        results = match_records(data.hub, data.outside, settings)
        best = min(best, time.perf_counter() - start)
    normalize_company_name.cache_clear()
    tracemalloc.start()
    match_records(data.hub, data.outside, settings)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return results, best, peak / 1e6


def sweep(data: MatchingDataset, base: MatchSettings, field: str, values: list[float]) -> list[tuple[float, Quality]]:
    """Quality for each value of one setting, the others as in `base`."""
    return [
        (v, evaluate(data, match_records(data.hub, data.outside, dataclasses.replace(base, **{field: v}))))
        for v in values
    ]


ABLATIONS: dict[str, dict[str, object]] = {
    "defaults": {},
    "no unshared-word rule": {"unshared_words_block": False},
    "no zip/city conflict rule": {"location_conflict_blocks": False},
    "no location bonus": {"location_bonus": 0.0},
    "margin 0": {"margin": 0.0},
    "words sorted (token_sort_ratio)": {"sort_words": True},
}


def plot_curves(
    threshold_curves: dict[str, list[tuple[float, Quality]]], margin_curve: list[tuple[float, Quality]],
    settings: MatchSettings, path: Path,
) -> None:
    """Left: precision and recall against name_threshold (with and without the word rule); right: margin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    styles = {"defaults": "-", "no unshared-word rule": "--"}
    for label, curve in threshold_curves.items():
        xs = [t for t, _ in curve]
        style = styles.get(label, ":")
        left.plot(xs, [q.precision for _, q in curve], style, marker="o", color="C0", label=f"precision, {label}")
        left.plot(xs, [q.recall for _, q in curve], style, marker="s", color="C1", label=f"recall, {label}")
    left.axvline(settings.name_threshold, color="black", linestyle="--", linewidth=1)
    left.set_xlabel(f"name_threshold (default {settings.name_threshold:g})")
    xs = [m for m, _ in margin_curve]
    right.plot(xs, [q.precision for _, q in margin_curve], marker="o", color="C0", label="precision")
    right.plot(xs, [q.recall for _, q in margin_curve], marker="s", color="C1", label="recall")
    right.axvline(settings.margin, color="black", linestyle="--", linewidth=1)
    right.set_xlabel(f"margin (default {settings.margin:g})")
    shares = {left: threshold_curves["defaults"], right: margin_curve}
    for ax in (left, right):
        ax.axhline(0.995, color="grey", linestyle=":", linewidth=1)
        ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(0.84, 1.005)
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        curve = shares[ax]
        twin.plot([x for x, _ in curve], [q.ambiguous_share for _, q in curve], "-.", marker="^", color="C2",
                  label="ambiguous share (right axis)")
        twin.set_ylim(0, 0.4)
        lines = ax.get_legend_handles_labels()
        twin_lines = twin.get_legend_handles_labels()
        ax.legend(lines[0] + twin_lines[0], lines[1] + twin_lines[1], loc="lower left", fontsize=7)
    left.set_ylabel("precision, recall")
    left.set_title("name_threshold sweep (ambiguous_floor 50)", fontsize=9)
    right.set_title("margin sweep (other settings default)", fontsize=9)
    fig.suptitle("Matcher on the generated benchmark (dotted: targets 0.995 precision, 0.95 recall)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(title: str, rows: list[tuple[object, Quality]]) -> None:
    print(f"\n{title}")
    print(f"  {'':34} precision  recall  ambiguous")
    for label, q in rows:
        print(f"  {label!s:34} {q.precision:9.4f}  {q.recall:6.4f}  {q.ambiguous_share:9.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, help="Hub customers and outside records (each)")
    parser.add_argument("--curve-size", type=int, default=5_000, help="size of the data for the threshold curve")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    settings = MatchSettings()

    data = make_dataset(args.size, seed=args.seed)
    results, matcher_s, peak_mb = time_matcher(data, settings)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the cdist yardstick's matrix
    cdist_s = time_cdist(data)
    q = evaluate(data, results)
    print(f"data: {q.hubs} Hub customers, {len(data.outside)} outside records, {q.true_pairs} true pairs (seed {args.seed})")
    print(f"settings: {settings}")
    print(f"precision (confident correct / confident):  {q.precision:.4f}  ({q.confident_correct}/{q.confident})")
    print(f"recall (confident correct / true pairs):    {q.recall:.4f}  ({q.confident_correct}/{q.true_pairs})")
    print(f"ambiguous share (of all customers):         {q.ambiguous_share:.4f}  ({q.ambiguous}; "
          f"{q.ambiguous_with_twin} of them have a twin)")
    print(f"matcher time:  {matcher_s:.2f} s")
    print(f"cdist time:    {cdist_s:.2f} s  (one process.cdist over {q.hubs} x {len(data.outside)} names, workers=-1)")
    print(f"ratio:         {matcher_s / cdist_s:.2f}  (target <= 0.50)")
    print(f"peak memory:   {peak_mb:.1f} MB traced by tracemalloc during one matcher run; "
          f"process max RSS {rss_mb:.0f} MB (data generation included)")
    for line in errors(data, results):
        print("  wrong:", line)

    if not args.no_plot:
        curve_data = make_dataset(args.curve_size, seed=args.seed + 1)
        base = dataclasses.replace(settings, ambiguous_floor=50.0)  # so that low thresholds still see candidates
        ablation = [
            (label, evaluate(curve_data, match_records(curve_data.hub, curve_data.outside,
                                                       dataclasses.replace(settings, **changes))))
            for label, changes in ABLATIONS.items()
        ]
        print_table(f"rules switched off one at a time ({args.curve_size} customers, seed {args.seed + 1}):", ablation)
        thresholds = [50, 60, 70, 75, 80, 85, 88, 90, 92, 94, 96, 98, 100]
        threshold_curves = {
            "defaults": sweep(curve_data, base, "name_threshold", thresholds),
            "no unshared-word rule": sweep(
                curve_data, dataclasses.replace(base, unshared_words_block=False), "name_threshold", thresholds),
        }
        for label, curve in threshold_curves.items():
            print_table(f"name_threshold sweep, {label}:", curve)
        margin_curve = sweep(curve_data, settings, "margin", [0, 1, 2, 3, 5, 8, 10, 15, 20])
        print_table("margin sweep, defaults otherwise:", margin_curve)
        floor_curve = sweep(curve_data, settings, "ambiguous_floor", [60, 70, 75, 80, 85, 90])
        print_table("ambiguous_floor sweep (only the ambiguous share moves):", floor_curve)
        plot_curves(threshold_curves, margin_curve, settings, PLOT_PATH)
        print(f"\nplot: {PLOT_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
