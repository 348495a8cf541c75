"""Full-scale load on `fmnist-edge serve --repository`: python benchmarks/serve_load.py [ARTIFACTS] [SECONDS].

Both request kinds at concurrency 1, 8 and 32, a new version published midway through each step; writes
benchmarks/results/serve_load.json and prints one line per step."""

import json
import sys
from pathlib import Path

from fmnist_edge.benchmarks.load import load_test
from fmnist_edge.benchmarks.machine import machine

artifacts = sys.argv[1] if len(sys.argv) > 1 else "artifacts"
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
result = {"machine": machine(), **load_test(artifacts, concurrency=(1, 8, 32), seconds=seconds)}
out = Path(__file__).with_name("results") / "serve_load.json"
out.write_text(json.dumps(result, indent=2) + "\n")
print(f"failed requests: {sum(r['failed'] for r in result['rows'])}; results: {out}")
