"""Benchmark of the matcher: quality on labelled data, time against one all-pairs cdist, memory, PR curve.

Run: python bench/bench_matching.py [--size 20000] [--seed 7] [--no-plot]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
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


def time_cdist(data: MatchingDataset) -> float:
    """Seconds for one rapidfuzz cdist over all name pairs, the yardstick of the performance target."""
    from rapidfuzz import process

    hub_names = [r.name for r in data.hub]
    outside_names = [r.name for r in data.outside]
    start = time.perf_counter()
    matrix = process.cdist(hub_names, outside_names, workers=-1, dtype="uint8")
    elapsed = time.perf_counter() - start
    del matrix
    return elapsed


def time_matcher(data: MatchingDataset, settings: MatchSettings) -> tuple[dict[object, MatchResult], float, float]:
    """Results, seconds, and peak traced memory in MB of one cold matcher run."""
    normalize_company_name.cache_clear()  # the generator warmed it; a real run starts cold
    gc.collect()
    start = time.perf_counter()
    results = match_records(data.hub, data.outside, settings)
    elapsed = time.perf_counter() - start
    normalize_company_name.cache_clear()
    tracemalloc.start()
    match_records(data.hub, data.outside, settings)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return results, elapsed, peak / 1e6


def threshold_curve(data: MatchingDataset, thresholds: list[float], base: MatchSettings) -> list[tuple[float, Quality]]:
    """Quality at each name threshold, other settings as in `base`."""
    return [
        (t, evaluate(data, match_records(data.hub, data.outside, dataclasses.replace(base, name_threshold=t))))
        for t in thresholds
    ]


def plot_curve(curve: list[tuple[float, Quality]], chosen: float, path: Path) -> None:
    """Precision, recall and ambiguous share against the name threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [t for t, _ in curve]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(xs, [q.precision for _, q in curve], marker="o", label="precision (confident)")
    ax.plot(xs, [q.recall for _, q in curve], marker="s", label="recall (confident-correct / true pairs)")
    ax.plot(xs, [q.ambiguous_share for _, q in curve], marker="^", label="ambiguous share")
    ax.axhline(0.995, color="grey", linestyle=":", linewidth=1)
    ax.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    ax.axvline(chosen, color="black", linestyle="--", linewidth=1, label=f"default name_threshold = {chosen:g}")
    ax.set_xlabel("name_threshold")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.02)
    ax.set_title("Matcher on the generated benchmark")
    ax.legend(loc="center left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    print(f"peak memory:   {peak_mb:.1f} MB traced by tracemalloc during one matcher run")
    for line in errors(data, results):
        print("  wrong:", line)

    if not args.no_plot:
        curve_data = make_dataset(args.curve_size, seed=args.seed + 1)
        thresholds = [70, 75, 80, 84, 86, 88, 90, 92, 94, 96, 98, 100]
        curve = threshold_curve(curve_data, thresholds, dataclasses.replace(settings, ambiguous_floor=65.0))
        print(f"\nthreshold curve on {args.curve_size} customers (seed {args.seed + 1}):")
        print("  threshold  precision  recall  ambiguous")
        for t, cq in curve:
            print(f"  {t:9g}  {cq.precision:9.4f}  {cq.recall:6.4f}  {cq.ambiguous_share:9.4f}")
        plot_curve(curve, settings.name_threshold, PLOT_PATH)
        print(f"plot: {PLOT_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
