"""`predict --ray`: an archive of image files classified with Ray Data, one Parquet row per file.

Ray Data reads the files (a folder, or an s3:// prefix through pyarrow's filesystems), decodes and preprocesses
them (`_prepare`, a CPU step that Ray Data fuses into the next one), and classifies the prepared pixels on a pool of
actors, each of which compiles the model once (`_Classify`, a callable class: the pattern of Ray Data's
batch-inference docs). The model's files travel with
the actors, so the workers need no shared disk. A file that cannot be read as an image is a row with `error` set
and no label; it never stops the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..artifact import MANIFEST, Layout
from ..contract import IMAGE_SIZE, NUM_CLASSES
from ..errors import ClusterError, ImageNotFoundError, first_line
from ..runtime.decode import EXTENSIONS
from . import filesystem, root_cause


def _prepare(batch: dict, polarity: str, scheme: str = "") -> dict:
    """A CPU task: encoded files -> dataset-form pixels uint8 (n, 28, 28) and an error per file ("" when ok: a
    column of None only would reach the next step as NaN); `scheme` ("s3://") goes back in front of remote paths."""
    from ..runtime.preprocess import prepare

    pixels = np.zeros((len(batch["path"]), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    errors = []
    for i, data in enumerate(batch["bytes"]):
        try:
            a = prepare(bytes(data), polarity)
            pixels[i] = a if a.dtype == np.uint8 else np.rint(a * 255.0)
            errors.append("")
        except Exception as exc:  # noqa: BLE001 - a bad file is a row with its error, never the end of the run
            errors.append(getattr(exc, "reason", None) or first_line(exc))
    paths = np.asarray([scheme + p for p in batch["path"]], dtype=object)
    return {"path": paths, "pixels": pixels, "error": np.asarray(errors, dtype=str)}


class _Classify:
    """An actor of the pool: writes the model's files to a folder of its own and compiles them once, then
    classifies each batch of prepared pixels (as `Classifier.predict_batch` does for local `predict`)."""

    def __init__(self, files: dict[str, bytes], precision: str, device: str, top_k: int, threads: int | None):
        import tempfile

        from ..runtime import Classifier

        self.folder = Path(tempfile.mkdtemp(prefix="fmnist-edge-model-"))
        for rel, data in files.items():
            (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / rel).write_bytes(data)
        self.clf = Classifier.load(self.folder, precision=precision, device=device, threads=threads, hint="throughput")
        self.top_k = top_k

    def __call__(self, batch: dict):
        import pyarrow as pa

        errors = [e if isinstance(e, str) and e else None for e in batch["error"]]
        ok = [i for i, e in enumerate(errors) if e is None]
        preds = dict(zip(ok, self.clf.predict_batch(batch["pixels"][ok], top_k=self.top_k), strict=True)) if ok else {}
        top = pa.list_(pa.struct([("label", pa.string()), ("confidence", pa.float32())]))
        return pa.table({
            "path": pa.array([str(p) for p in batch["path"]], pa.string()),
            "label": pa.array([preds[i].label if i in preds else None for i in range(len(errors))], pa.string()),
            "index": pa.array([preds[i].index if i in preds else None for i in range(len(errors))], pa.int16()),
            "confidence": pa.array([preds[i].confidence if i in preds else None for i in range(len(errors))], pa.float32()),
            "top_k": pa.array([[{"label": n, "confidence": q} for n, q in preds[i].top_k] if i in preds else None
                               for i in range(len(errors))], top),
            "error": pa.array(errors, pa.string()),
        })


def model_files(model_dir: str | os.PathLike, precision: str) -> dict[str, bytes]:
    """The files an actor needs to load `precision` from artifact folder `model_dir`: manifest.json and that
    precision's IR folder, by path relative to the folder (verified again by the actor against the manifest)."""
    root = Path(model_dir)
    ir = Layout(root).ir_xml(precision).parent
    paths = [root / MANIFEST, *sorted(p for p in ir.rglob("*") if p.is_file())]
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def _check_source(source: str) -> None:
    """A local SOURCE must be a folder with image files in it; remote prefixes are listed by Ray Data itself."""
    if "://" in source:
        return
    folder = Path(source)
    if not folder.is_dir():
        raise ImageNotFoundError(f"{source} {'is a file' if folder.exists() else 'does not exist'}: "
                                 "`predict --ray` reads a folder of images or an s3:// prefix")
    if not any(p.suffix.lower() in EXTENSIONS for p in folder.rglob("*")):
        raise ImageNotFoundError(f"folder {source} holds no {', '.join(EXTENSIONS)} files")


def run(source: str, out: str | os.PathLike, model_dir: str | os.PathLike = "artifacts", *, address: str = "local",
        precision: str = "auto", device: str = "CPU", top_k: int = 3, polarity: str = "auto", batch_size: int = 64,
        actors: int | None = None, cpus_per_actor: int = 1, log: Callable[[str], None] = print) -> dict:
    """Classify every image file under `source` on Ray into the Parquet dataset `out` (a folder of part files,
    one row per file: path, label, index, confidence, top_k, error) -> {"images", "errors", "out", "precision"}.

    precision "auto" is resolved once here (the fastest verified precision on this machine), so that every actor
    runs the same model. `actors`: the most classifying actors (None: as many as the cluster's CPUs allow)."""
    from ..runtime import Classifier
    from . import connect

    _check_source(str(source))
    if not 1 <= top_k <= NUM_CLASSES:
        raise ClusterError(f"--top-k must be from 1 to {NUM_CLASSES}, got {top_k}")
    chosen = Classifier.load(model_dir, precision=precision, device=device).precision  # a bad model fails here, once
    files = model_files(model_dir, chosen)
    out = str(out) if "://" in str(out) else str(Path(out).resolve())
    out_fs, out_path = filesystem(out)  # remote ones travel to the workers with their endpoint and keys
    source_fs, source_path = filesystem(str(source) if "://" in str(source) else str(Path(source).resolve()))
    with connect(address) as ray:
        import pyarrow.dataset as pads

        try:
            ds = ray.data.read_binary_files(source_path, include_paths=True, file_extensions=[e[1:] for e in EXTENSIONS],
                                            filesystem=source_fs)
            scheme = str(source).partition("://")[0] + "://" if source_fs is not None else ""
            ds = ds.map_batches(_prepare, fn_kwargs={"polarity": polarity, "scheme": scheme}, batch_size=batch_size,
                                num_cpus=1)
            ds = ds.map_batches(_Classify, batch_size=batch_size, num_cpus=cpus_per_actor,
                                fn_constructor_kwargs={"files": files, "precision": chosen, "device": device,
                                                       "top_k": top_k, "threads": cpus_per_actor},
                                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors))
            log(f"classifying {source} on Ray ({chosen}) into {out}")
            ds.write_parquet(out_path, filesystem=out_fs, mode=ray.data.SaveMode.OVERWRITE)  # a rerun replaces old rows
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"the Ray run over {source} failed: {root_cause(exc)}") from None
    errors = pads.dataset(out_path, format="parquet", filesystem=out_fs).to_table(columns=["error"]).column("error")
    return {"images": len(errors), "errors": len(errors) - errors.null_count, "out": out, "precision": chosen}
