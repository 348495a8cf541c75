"""Cold start: a fresh Python process per backend, timed from spawn to its first prediction, with peak RSS."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..artifact import COLD_IMAGE, Layout
from ..contract import IMAGE_SHAPE, INPUT_SHAPE
from .backends import env_threads

# Each snippet gets FOLDER, MODEL (its model file in the folder, see _model), PRECISION, THREADS, `raw` (one uint8
# (28, 28) dataset image) and `x` (the same as float32 (1, 28, 28, 1) in [0, 1]) and leaves the class index of its
# first prediction in `top`. Only what that backend needs is imported.
SNIPPETS = {
    "tensorflow": """
import tensorflow as tf
fn = tf.saved_model.load(MODEL).signatures["serving_default"]
top = int(fn(image=tf.constant(x))["probabilities"].numpy().argmax())
""",
    "keras": """
import keras
m = keras.models.load_model(MODEL, compile=False, safe_mode=True)
top = int(m.predict(x, verbose=0).argmax())
""",
    "openvino": """
from fmnist_edge.runtime import Classifier
top = Classifier.load(FOLDER, precision=PRECISION, threads=THREADS).predict(raw).index
""",
    "onnxruntime": """
import onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = THREADS; o.inter_op_num_threads = 1
s = ort.InferenceSession(MODEL, o, providers=["CPUExecutionProvider"])
top = int(s.run(None, {s.get_inputs()[0].name: x})[0].argmax())
""",
    "tflite": """
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=MODEL, num_threads=THREADS); it.allocate_tensors()
it.set_tensor(it.get_input_details()[0]["index"], x); it.invoke()
top = int(it.get_tensor(it.get_output_details()[0]["index"]).argmax())
""",
}

_WRAPPER = """
import json, resource, sys
import numpy as np
FOLDER, MODEL, PRECISION, THREADS = {folder!r}, {model!r}, {precision!r}, {threads}
raw = np.load({image!r})
x = (raw.astype(np.float32) / 255.0).reshape({shape})
{snippet}
def peak_rss_kb():
    # VmHWM belongs to this process image; ru_maxrss would also count the parent's memory at fork
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("FMNIST_COLD " + json.dumps({{"top": top, "peak_rss_kb": peak_rss_kb(),
                                   "tensorflow_loaded": "tensorflow" in sys.modules}}), flush=True)
"""


def cold_start(backend: str, folder: Path, precision: str, threads: int, image: np.ndarray, timeout: float = 300) -> dict:
    """Spawn a fresh interpreter fed one uint8 (28, 28) image; return {"cold_start_s", "peak_rss_mb", "top"} or {"error"}."""
    if backend not in SNIPPETS:
        return {"error": f"no cold-start recipe for {backend}"}
    layout = Layout(Path(folder).resolve())
    img_path = layout.bench / COLD_IMAGE
    img_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(img_path, np.asarray(image, dtype=np.uint8).reshape(IMAGE_SHAPE))
    model = _model(backend, layout, precision)
    code = _WRAPPER.format(folder=str(layout.root), model=model, precision=precision, threads=threads,
                           shape=(1, *INPUT_SHAPE[1:]), image=str(img_path), snippet=SNIPPETS[backend])
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env_threads(threads))
    result = None
    try:
        for line in proc.stdout:
            if line.startswith("FMNIST_COLD "):
                elapsed = time.perf_counter() - t0
                info = json.loads(line.split(" ", 1)[1])
                result = {"cold_start_s": elapsed, "peak_rss_mb": info["peak_rss_kb"] / 1024, "top": info["top"],
                          "tensorflow_loaded": info["tensorflow_loaded"]}
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"error": f"no first prediction within {timeout:.0f} s"}
    finally:
        img_path.unlink(missing_ok=True)
    if result is None:
        err = (proc.stderr.read() or "").strip().splitlines()
        return {"error": (err[-1] if err else f"exit code {proc.returncode}")[:200]}
    return result


def _model(backend: str, layout: Layout, precision: str = "fp32") -> str | None:
    """The file (or SavedModel folder) `backend`'s snippet loads as MODEL; None for OpenVINO, which loads FOLDER."""
    from .backends import PEER_FORMAT

    if backend in PEER_FORMAT:
        return str(layout.peer_file(PEER_FORMAT[backend], precision))
    path = {"tensorflow": layout.saved_model, "keras": layout.keras}.get(backend)
    return str(path) if path else None
