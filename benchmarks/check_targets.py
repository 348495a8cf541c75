"""Judge a bench.json by the targets `fmnist-edge bench` uses (fmnist_edge.benchmarks.bench.TARGETS); exit 1 when
any is missed, printing every ratio either way."""

import sys

from fmnist_edge.artifact import BENCH_JSON, read_bench
from fmnist_edge.benchmarks.bench import TARGETS, missed, ratios


def main(path: str) -> int:
    result = read_bench(path)
    measured = ratios(result.results, result.soak, result.auto)  # re-judged: the table may be newer than the file
    for name in TARGETS:
        if name in measured:
            r = measured[name]
            mark = "    " if r["met"] is None else "ok  " if r["met"] else "MISS"
            print(f"{mark} {name:<50} {r['value']:>10.3f}  (target {r['target'] or 'none'})")
    return 1 if missed(measured) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else f"benchmarks/results/{BENCH_JSON}"))
