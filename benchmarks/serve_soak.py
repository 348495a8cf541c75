"""Soak `fmnist-edge serve --repository`: python benchmarks/serve_soak.py [ARTIFACTS] [REQUESTS] [CLIENTS].

100,000 requests by default from 32 clients, a mix of good and hostile ones, 16 silent connections held
open, 4 new versions published along the way. Writes benchmarks/results/serve_soak.json, prints the summary,
and exits 1 on any unexpected answer or an RSS that still grows in the second half."""

import json
import sys
from pathlib import Path

from fmnist_edge.benchmarks.machine import machine
from fmnist_edge.benchmarks.serve_soak import soak

artifacts = sys.argv[1] if len(sys.argv) > 1 else "artifacts"
requests = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
clients = int(sys.argv[3]) if len(sys.argv) > 3 else 32
result = {"machine": machine(), **soak(artifacts, requests=requests, clients=clients)}
out = Path(__file__).with_name("results") / "serve_soak.json"
out.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps({k: v for k, v in result.items() if k not in ("rss_trace", "machine")}, indent=2))
growing = (result["rss_mb"]["slope_second_half_mb_per_10k"] or 0) > 1.0
sys.exit(1 if result["unexpected"] or growing else 0)
