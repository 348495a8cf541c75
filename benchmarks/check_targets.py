"""Check a bench.json against the issue's targets; exit 1 when any is missed (prints every ratio either way)."""

import json
import sys


def main(path: str) -> int:
    result = json.load(open(path))
    missed = 0
    for name, r in result["ratios"].items():
        missed += not r["met"]
        print(f"{'ok  ' if r['met'] else 'MISS'} {name:<44} {r['value']:>10.3f}  (target {r['target']})")
    soak = result.get("soak")
    if soak:
        flat = soak["rss_growth_mb"] <= 10 and soak["mismatches"] == 0
        missed += not flat
        print(f"{'ok  ' if flat else 'MISS'} soak: {soak['predictions']} predictions, RSS growth {soak['rss_growth_mb']:.1f} MB, "
              f"{soak['mismatches']} mismatches (target: <= 10 MB, 0)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/bench.json"))
