"""Studies: a 16-trial sweep of small networks run one after another in this process against `sweep --ray local`.

    python benchmarks/ray_sweep.py [--arch tiny,mlp_tanh] [--epochs 2] [--limit 2000] [--out benchmarks/results/ray_sweep.json]

The trials are `sweep --search grid` over two networks: GRID in fmnist_edge/cluster/sweep.py (optimizer x learning
rate x augmentation, 8 recipes) for each, 16 in all, every one trained, converted (checked on the whole test set)
and benched (`--bench-seconds`), early stopping off so that both sides run the same work. Three timings, each the
whole call: local (`studies.compare.run_one` per trial with the trial's recipe, in this process: what a loop
without Ray pays), Ray with one trial at a time on every core (`--cpus-per-trial` = the cores: the same work as
local, so the difference over 16 is Ray's overhead per trial: its start, a worker process per trial with its
imports, checkpoints into the storage) and Ray with one core per trial (trials side by side: what a user gets).
Needs the [cluster] extra and the data set.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

from fmnist_edge.atomic import write_json
from fmnist_edge.benchmarks.machine import machine
from fmnist_edge.cluster import sweep as S
from fmnist_edge.host import usable_cores
from fmnist_edge.studies import compare as C


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="tiny,mlp_tanh")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--bench-seconds", type=float, default=0.2)
    ap.add_argument("--out", default="benchmarks/results/ray_sweep.json")
    args = ap.parse_args()
    archs, cores = tuple(args.arch.split(",")), usable_cores()
    work = Path(tempfile.mkdtemp(prefix="fmnist-ray-sweep-"))
    recipes = [dict(zip(S.GRID, values, strict=True)) for values in itertools.product(*S.GRID.values())]
    trials = [(arch, recipe) for arch in archs for recipe in recipes]

    cfg = C.CompareConfig(archs=archs, epochs=args.epochs, limit=args.limit, bench_seconds=args.bench_seconds)
    t0, local = time.perf_counter(), []
    for i, (arch, recipe) in enumerate(trials):
        t = time.perf_counter()
        row = C.run_one(arch, work / "local" / f"{i:02d}-{arch}", cfg, log=lambda _: None, recipe=recipe)
        local.append({"arch": arch, **recipe, "seconds": round(time.perf_counter() - t, 2), "accuracy": row["accuracy"]})
    local_s = time.perf_counter() - t0
    print(f"local: {len(trials)} trials in {local_s:.1f} s ({local_s / len(trials):.1f} s a trial)")

    timings = {}
    for cpus in (cores, 1):
        sweep = S.SweepConfig(archs=archs, num_samples=1, search="grid", epochs=args.epochs, limit=args.limit,
                              bench_seconds=args.bench_seconds, early_stop=False, out=str(work / f"ray-{cpus}"))
        t0 = time.perf_counter()
        result = S.run(sweep, address="local", cpus_per_trial=cpus, log=lambda _: None)
        timings[cpus] = time.perf_counter() - t0
        finished = sum(t["status"] == "finished" for t in result["trials"])
        print(f"Ray, {cpus} CPU a trial: {finished} of {len(result['trials'])} trials finished in {timings[cpus]:.1f} s")
        if finished != len(trials):
            print(json.dumps(result["trials"], indent=1))
            return 1

    overhead = (timings[cores] - local_s) / len(trials)
    out = {"machine": machine(), "cores": cores, "trials": len(trials), "archs": list(archs), "epochs": args.epochs,
           "limit": args.limit, "bench_seconds": args.bench_seconds, "local_s": round(local_s, 1),
           "ray_one_at_a_time_s": round(timings[cores], 1), "ray_one_cpu_each_s": round(timings[1], 1),
           "ray_overhead_per_trial_s": round(overhead, 2), "local_trials": local}
    write_json(Path(args.out), out)
    print(json.dumps({k: out[k] for k in ("local_s", "ray_one_at_a_time_s", "ray_one_cpu_each_s",
                                         "ray_overhead_per_trial_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
