"""Archive runs: photos/s of `predict` on this machine's cores against `predict --ray local` (Ray Data) on the same machine.

    python benchmarks/ray_predict.py [ARTIFACTS] [--photos 2000] [--size vga] [--out benchmarks/results/ray_predict.json]

The photos are camera-like JPEGs made from real test images (harness/photos.py), written to a temporary folder.
Three timings, each the whole call from file names to labels: local (`Classifier.predict_iter`, decoding on every
core, what `fmnist-edge predict FOLDER` runs), Ray cold (`cluster.predict.run` with address "local": Ray's start,
the actors' model compile and the Parquet write included, what one `predict --ray local` command pays), and Ray
warm (the same with Ray already running in this process: what each further run on a running cluster pays). The
labels of both are compared. Needs the [cluster] extra and the data set.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from fmnist_edge.atomic import write_json
from fmnist_edge.benchmarks.machine import machine
from fmnist_edge.cluster.predict import run as run_on_ray
from fmnist_edge.data import load
from fmnist_edge.harness.photos import make_photos
from fmnist_edge.host import usable_cores
from fmnist_edge.runtime import Classifier


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifacts", nargs="?", default="artifacts")
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--size", default="vga", help="frame size of the photos: qvga, vga, 1080p")
    ap.add_argument("--out", default="benchmarks/results/ray_predict.json")
    args = ap.parse_args()

    ds = load()
    work = Path(tempfile.mkdtemp(prefix="fmnist-ray-predict-"))
    folder = work / "photos"
    folder.mkdir()
    n = min(args.photos, len(ds.x_test))
    for i, p in enumerate(make_photos(ds.x_test[:n], ds.y_test[:n], conditions=("camera",), sizes=(args.size,), seed=0)):
        (folder / f"photo{i:05d}.jpg").write_bytes(p.data)
    files = sorted(folder.iterdir())
    clf = Classifier.load(args.artifacts)
    precision = clf.precision

    t0 = time.perf_counter()
    local = {str(f): p.index for f, p in zip(files, clf.predict_iter(files, errors="return", processes="auto"),
                                               strict=True)}
    local_s = time.perf_counter() - t0
    print(f"local: {n / local_s:.0f} photos/s ({local_s:.1f} s)")

    t0 = time.perf_counter()
    run_on_ray(str(folder), work / "cold.parquet", args.artifacts, address="local", precision=precision, log=lambda _: None)
    cold_s = time.perf_counter() - t0
    print(f"Ray cold (its start included): {n / cold_s:.0f} photos/s ({cold_s:.1f} s)")

    import pyarrow.dataset as pads
    import ray

    ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False)
    try:
        run_on_ray(str(folder), work / "warmup.parquet", args.artifacts, address="local", precision=precision,
                   log=lambda _: None)  # Ray's workers up, imports done
        t0 = time.perf_counter()
        run_on_ray(str(folder), work / "warm.parquet", args.artifacts, address="local", precision=precision,
                   log=lambda _: None)
        warm_s = time.perf_counter() - t0
    finally:
        ray.shutdown()
    print(f"Ray warm (running already): {n / warm_s:.0f} photos/s ({warm_s:.1f} s)")

    table = pads.dataset(str(work / "warm.parquet"), format="parquet").to_table(columns=["path", "index"]).to_pylist()
    on_ray = {row["path"]: row["index"] for row in table}
    same = sum(on_ray.get(str(f.resolve())) == local[str(f)] for f in files)
    result = {"machine": machine(), "photos": n, "size": args.size, "precision": precision, "cores": usable_cores(),
              "local_photos_per_s": round(n / local_s, 1), "ray_cold_photos_per_s": round(n / cold_s, 1),
              "ray_warm_photos_per_s": round(n / warm_s, 1), "ray_cold_s": round(cold_s, 2),
              "ray_warm_s": round(warm_s, 2), "local_s": round(local_s, 2), "same_labels": same}
    write_json(Path(args.out), result)
    print(json.dumps({k: result[k] for k in ("local_photos_per_s", "ray_cold_photos_per_s", "ray_warm_photos_per_s",
                                             "same_labels")}))
    return 0 if same == n else 1


if __name__ == "__main__":
    sys.exit(main())
