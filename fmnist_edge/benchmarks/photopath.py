"""What a kiosk pays per photo: JPEG bytes -> label through the runtime, beside its floors, and how often it is right.

For each frame size, camera-like JPEGs (`photos.py`, condition `camera`) are timed through the one benchmark
loop at four depths: libjpeg's cheapest decode (gray at 1/8 scale: the floor of any photo path), decode +
preprocessing (`to_dataset_form`), the whole `Classifier.predict(bytes)`, and the model alone on a
dataset-form image. Throughput is `predict_proba` over the photos on every core. Agreement with the
data set's own image and accuracy are reported per condition at VGA.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..harness import photos as P
from ..host import usable_cores
from .loop import timed_loop


def _decode_floor(data: bytes) -> None:
    im = Image.open(io.BytesIO(data))
    im.draft("L", (max(1, im.width // 8), max(1, im.height // 8)))
    im.load()


def photo_path(folder, x: np.ndarray, y: np.ndarray, precision: str = "auto", threads: int | None = None,
               sizes=("qvga", "vga", "1080p", "12mp"), latency_photos: int = 24, agreement_images: int = 200,
               iters: int = 200, seed: int = 0) -> dict:
    """Latency per frame size and agreement per condition -> {"precision", "sizes": [...], "conditions": {...}}."""
    from ..runtime import Classifier, to_dataset_form

    clf = Classifier.load(folder, precision=precision, threads=threads or None)
    rows = []
    for size in sizes:
        n = min(latency_photos, len(x)) if size != "12mp" else min(8, len(x))
        shots = [p.data for p in P.make_photos(x[:n], y[:n], conditions=("camera",), sizes=(size,), seed=seed)]
        k = {"i": 0}

        def cycle(fn, shots=shots, k=k):
            def step():
                k["i"] += 1
                return fn(shots[k["i"] % len(shots)])
            return step

        reps = max(10, iters // (8 if size == "12mp" else 1))
        stats = {name: timed_loop(cycle(fn), warmup=len(shots), iters=reps)["latency_us"]["p50"]
                 for name, fn in (("decode_floor_us", _decode_floor), ("preprocess_us", to_dataset_form),
                                  ("predict_us", clf.predict))}
        model = timed_loop(lambda: clf.predict(x[0]), warmup=20, iters=reps)["latency_us"]["p50"]
        many = shots * max(1, 64 // len(shots))
        tput = timed_loop(lambda many=many: clf.predict_proba(many), warmup=1, iters=3)["latency_us"]["p50"]
        w, h = P.FRAME_SIZES.get(size, size) if isinstance(size, str) else size
        rows.append({"size": size if isinstance(size, str) else f"{w}x{h}", "frame": f"{w}x{h}",
                     "jpeg_kb": round(float(np.mean([len(s) for s in shots])) / 1024, 1),
                     **{key: round(v, 1) for key, v in stats.items()}, "model_us": round(model, 1),
                     "photos_per_s": round(len(many) * 1e6 / tput, 1),
                     "over_floor": round(stats["predict_us"] / (stats["decode_floor_us"] + model), 2)})
    m = min(agreement_images, len(x))
    conditions = P.agreement(clf, x[:m], y[:m], P.make_photos(x[:m], y[:m], sizes=("vga",), seed=seed)) if m else {}
    return {"precision": clf.precision, "precision_choice": clf.choice, "cores": usable_cores(), "sizes": rows,
            "conditions": conditions}


def table(result: dict) -> str:
    """The photo path as two plain-text tables."""
    lines = [f"photo -> label ({result['precision']}, camera condition, p50 per photo; floor = 1/8-scale gray decode + model)",
             f"{'frame':<11} {'JPEG':>7} {'floor':>8} {'prep':>8} {'predict':>9} {'model':>8} {'x floor':>8} {'photos/s':>9}"]
    for r in result["sizes"]:
        lines.append(f"{r['frame']:<11} {r['jpeg_kb']:>5.0f}KB {r['decode_floor_us'] / 1e3:>6.2f}ms "
                     f"{r['preprocess_us'] / 1e3:>6.2f}ms {r['predict_us'] / 1e3:>7.2f}ms {r['model_us'] / 1e3:>6.2f}ms "
                     f"{r['over_floor']:>8.2f} {r['photos_per_s']:>9.0f}")
    lines += ["", f"{'condition (VGA)':<16} {'agreement':>9} {'accuracy':>9} {'dataset acc':>11}  what"]
    for name, r in result["conditions"].items():
        lines.append(f"{name:<16} {r['agreement']:>9.1%} {r['accuracy']:>9.1%} {r['dataset_accuracy']:>11.1%}  {r['description']}")
    return "\n".join(lines)
