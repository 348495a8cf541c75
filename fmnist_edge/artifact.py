"""The artifact folder's one home: its file names, its precisions, and typed reads and writes of its JSON files.

What `train` writes, `convert` adds and `bench` measures lives in one folder:

    metadata.json  history.json  history.csv  model.keras  model.h5  saved_model/  report/  checkpoints/
    manifest.json  openvino/<ir>/model.xml|bin  onnx/model[_int8].onnx  tflite/model[_fp16|_int8].tflite
    serving/fmnist/1/
    bench/bench.json|csv|png

Every name is a constant here and every other module builds its paths with `Layout`; nobody else opens
metadata.json, manifest.json, history.json or bench.json by hand. A precision is one row of PRECISION_TABLE: the
IR it loads, the type it computes in, how its weights are compressed. Standard library only (plus the
project's own contract, errors and atomic writes): the runtime imports this module.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import contract
from .atomic import write_json
from .errors import ConfigError, IntegrityError, ManifestError, ModelFileError, PrecisionNotAvailableError

# ------------------------------------------------------------------------------------------- file names
# train
METADATA = "metadata.json"
HISTORY = "history.json"
HISTORY_CSV = "history.csv"
KERAS = "model.keras"
H5 = "model.h5"
SAVED_MODEL = "saved_model"
SAVED_MODEL_PB = "saved_model.pb"  # what makes a folder a SavedModel
REPORT = "report"
CHECKPOINTS = "checkpoints"
BEST_WEIGHTS = "best.weights.h5"
TRAIN_FILES = {"keras": KERAS, "h5": H5, "saved_model": SAVED_MODEL}  # metadata.json's "files"
# convert
MANIFEST = "manifest.json"
OPENVINO = "openvino"  # openvino/<ir>/
IR_XML = "model.xml"
IR_BIN = "model.bin"
ONNX = "onnx"
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model_int8.onnx"  # onnxruntime's own static int8
TFLITE = "tflite"
TFLITE_FILE = "model.tflite"
TFLITE_FP16_FILE = "model_fp16.tflite"  # LiteRT's fp16 weights
TFLITE_INT8_FILE = "model_int8.tflite"  # LiteRT's full-integer int8
SERVING = "serving"  # a model repository: serving/<MODEL_NAME>/<version>/model.xml|bin + manifest.json
SERVING_CONFIG = "config.json"  # OpenVINO Model Server's, at the repository's root
CONVERT_WRITES = (MANIFEST, OPENVINO, ONNX, TFLITE, SERVING)  # what `convert` owns in a folder and replaces
# bench
BENCH = "bench"
BENCH_JSON = "bench.json"
BENCH_CSV = "bench.csv"
BENCH_PNG = "bench.png"
COLD_IMAGE = ".cold_image.npy"  # the cold start's input image, for the moment it runs

CONVERT_HINT = "run `fmnist-edge convert` on the trained model"


# ------------------------------------------------------------------------------------------- precisions
NO_COMPRESSION = "none"
FP16_WEIGHTS = "fp16 weights"  # the IR saved with compress_to_fp16
INT8_NNCF = "int8 nncf"  # NNCF post-training quantization of the fp32 model


@dataclass(frozen=True)
class Precision:
    """One OpenVINO precision a model can be loaded at."""

    name: str
    compute: str  # INFERENCE_PRECISION_HINT: the type it computes in wherever it does not run int8
    compression: str  # how its IR's weights were made: NO_COMPRESSION, FP16_WEIGHTS or INT8_NNCF

    @property
    def ir(self) -> str:
        """The IR it loads: openvino/<ir>/ (bf16 is the fp32 IR computed in bf16)."""
        return contract.IR_OF[self.name]


# Without the hint the CPU plugin silently computes in bf16 on CPUs with AVX512_BF16/AMX: fp32, fp16 and int8 ask
# for f32.
PRECISION_TABLE: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", compute="f32", compression=NO_COMPRESSION),
    Precision("bf16", compute="bf16", compression=NO_COMPRESSION),
    Precision("fp16", compute="f32", compression=FP16_WEIGHTS),
    Precision("int8", compute="f32", compression=INT8_NNCF),
)}
assert tuple(PRECISION_TABLE) == contract.PRECISIONS, "PRECISION_TABLE and contract.PRECISIONS must name the same precisions"


# The peers' models, each precision made the way its runtime's documentation makes it, from the calibration images
# our int8 uses: one row per (format, precision), its file and how its weights were made.
ORT_QDQ_INT8 = "onnxruntime static QDQ int8, per channel"
LITERT_FULL_INT8 = "LiteRT full-integer int8"


@dataclass(frozen=True)
class PeerModel:
    """One peer format at one precision: the file `convert` writes for it."""

    format: str  # "onnx" (run by onnxruntime) or "tflite" (run by LiteRT)
    precision: str
    folder: str
    file: str
    compression: str


PEER_TABLE: dict[tuple[str, str], PeerModel] = {(m.format, m.precision): m for m in (
    PeerModel("onnx", "fp32", ONNX, ONNX_FILE, NO_COMPRESSION),
    PeerModel("onnx", "int8", ONNX, ONNX_INT8_FILE, ORT_QDQ_INT8),
    PeerModel("tflite", "fp32", TFLITE, TFLITE_FILE, NO_COMPRESSION),
    PeerModel("tflite", "fp16", TFLITE, TFLITE_FP16_FILE, FP16_WEIGHTS),
    PeerModel("tflite", "int8", TFLITE, TFLITE_INT8_FILE, LITERT_FULL_INT8),
)}


def peer_precisions(fmt: str) -> tuple[str, ...]:
    """The precisions `fmt`'s runtime is offered at, in the order of contract.PRECISIONS."""
    return tuple(p for p in contract.PRECISIONS if (fmt, p) in PEER_TABLE)


def precision_of(name: str) -> Precision:
    """The row of `name`; an unknown name raises ConfigError naming the known ones."""
    if name not in PRECISION_TABLE:
        raise ConfigError(f"unknown precision {name!r}; choose one of {', '.join(contract.PRECISIONS)}")
    return PRECISION_TABLE[name]


# ------------------------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class Layout:
    """The paths of one artifact folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    metadata = property(lambda self: self.root / METADATA)
    history = property(lambda self: self.root / HISTORY)
    history_csv = property(lambda self: self.root / HISTORY_CSV)
    keras = property(lambda self: self.root / KERAS)
    h5 = property(lambda self: self.root / H5)
    saved_model = property(lambda self: self.root / SAVED_MODEL)
    report = property(lambda self: self.root / REPORT)
    checkpoints = property(lambda self: self.root / CHECKPOINTS)
    best_weights = property(lambda self: self.root / CHECKPOINTS / BEST_WEIGHTS)
    manifest = property(lambda self: self.root / MANIFEST)
    openvino = property(lambda self: self.root / OPENVINO)
    onnx = property(lambda self: self.root / ONNX)
    onnx_file = property(lambda self: self.root / ONNX / ONNX_FILE)
    tflite = property(lambda self: self.root / TFLITE)
    tflite_file = property(lambda self: self.root / TFLITE / TFLITE_FILE)
    serving = property(lambda self: self.root / SERVING)
    bench = property(lambda self: self.root / BENCH)
    bench_json = property(lambda self: self.root / BENCH / BENCH_JSON)
    bench_csv = property(lambda self: self.root / BENCH / BENCH_CSV)
    bench_png = property(lambda self: self.root / BENCH / BENCH_PNG)

    def peer_file(self, fmt: str, precision: str) -> Path:
        """The peer model file of `fmt` ("onnx" | "tflite") at `precision`."""
        if (fmt, precision) not in PEER_TABLE:
            raise ConfigError(f"no {fmt} model at {precision}; {fmt} is made at {', '.join(peer_precisions(fmt)) or 'none'}")
        m = PEER_TABLE[(fmt, precision)]
        return self.root / m.folder / m.file

    def ir_dir(self, precision: str) -> Path:
        """openvino/<ir>/: the folder of the IR `precision` loads."""
        return self.root / OPENVINO / precision_of(precision).ir

    def ir_xml(self, precision: str) -> Path:
        return self.ir_dir(precision) / IR_XML

    def ir_bin(self, precision: str) -> Path:
        return self.ir_dir(precision) / IR_BIN

    def serving_version(self, version: str = contract.FIRST_VERSION) -> Path:
        """serving/<MODEL_NAME>/<version>/: the version `convert` writes (1)."""
        return self.root / SERVING / contract.MODEL_NAME / version


def ir_pair(folder: Path) -> list[Path]:
    """The IR pair in `folder`: [model.xml, model.bin]."""
    return [Path(folder) / IR_XML, Path(folder) / IR_BIN]


# ------------------------------------------------------------------------------------------- metadata.json
@dataclass(frozen=True)
class Metadata:
    """train's metadata.json (`raw`), read through typed accessors."""

    raw: dict = field(default_factory=dict)

    arch = property(lambda self: self.raw.get("arch"))
    params = property(lambda self: self.raw["params"])
    macs = property(lambda self: self.raw["macs"])
    epochs_run = property(lambda self: self.raw.get("epochs_run"))
    wall_time_s = property(lambda self: self.raw["wall_time_s"])
    test_accuracy = property(lambda self: self.raw["test"]["accuracy"])
    test_loss = property(lambda self: self.raw["test"]["loss"])
    test_n = property(lambda self: self.raw["test"]["n"])

    @property
    def config(self) -> dict:
        """The training config (TrainConfig.to_dict()); {} when not recorded."""
        return self.raw.get("config") or {}

    @property
    def class_names(self) -> list[str] | None:
        return self.raw.get("class_names")


def read_metadata(root: str | Path, strict: bool = True) -> Metadata:
    """`root`/metadata.json. strict: a missing or unreadable file raises ModelFileError; otherwise it reads as empty."""
    root = Path(root)
    path = Layout(root).metadata
    if not path.is_file():
        if strict:
            raise ModelFileError(f"{root}: no {METADATA}; point at a folder written by `fmnist-edge train`")
        return Metadata()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if strict:
            raise ModelFileError(f"{path}: unreadable ({exc}); re-run `fmnist-edge train`") from None
        return Metadata()
    if not isinstance(raw, dict):
        if strict:
            raise ModelFileError(f"{path}: unreadable (not a JSON object); re-run `fmnist-edge train`")
        return Metadata()
    return Metadata(raw)


def test_entry(metrics: dict) -> dict:
    """metadata.json's "test" entry from evaluate_and_report's figures."""
    return {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "n": metrics["n"]}


def write_metadata(root: str | Path, metadata: dict | Metadata) -> None:
    write_json(Layout(root).metadata, metadata.raw if isinstance(metadata, Metadata) else metadata)


def update_test_metrics(root: str | Path, metadata: Metadata, metrics: dict) -> Metadata:
    """Write `metadata` back with the test figures of `metrics`; returns what was written."""
    updated = Metadata({**metadata.raw, "test": test_entry(metrics)})
    write_metadata(root, updated)
    return updated


# ------------------------------------------------------------------------------------------- history.json
@dataclass(frozen=True)
class History:
    """train's per-epoch history: values by Keras metric name ("loss", "val_accuracy", ...)."""

    metrics: dict

    @property
    def best_val_accuracy(self) -> float | None:
        return max(self.metrics.get("val_accuracy", [None]) or [None])


def read_history(root: str | Path, missing_ok: bool = False) -> History | None:
    """`root`/history.json (None when it is missing and `missing_ok`)."""
    path = Layout(root).history
    if missing_ok and not path.is_file():
        return None
    return History(json.loads(path.read_text()))


def write_history(root: str | Path, history: dict) -> None:
    write_json(Layout(root).history, history)


# ------------------------------------------------------------------------------------------- manifest.json
@dataclass(frozen=True)
class Artifact:
    """One entry of manifest.json's "artifacts": one format x precision, its files and its check."""

    format: str
    precision: str
    files: tuple  # ({"path": relative, "bytes", "sha256"}, ...)
    inference_precision: str | None = None
    check: dict | None = None  # convert.check.compare's figures
    status: str = "ok"
    reason: str | None = None

    @classmethod
    def of(cls, entry: dict) -> Artifact:
        return cls(entry.get("format"), entry.get("precision"), tuple(entry.get("files") or ()),
                   entry.get("inference_precision"), entry.get("check"), entry.get("status"), entry.get("reason"))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def size_bytes(self) -> int:
        return sum(f["bytes"] for f in self.files)

    @property
    def accuracy(self) -> float | None:
        """Its accuracy on the check images, when it was checked."""
        return (self.check or {}).get("accuracy")


@dataclass(frozen=True)
class Manifest:
    """A read manifest.json: `raw` as written, `artifacts` typed."""

    raw: dict

    @property
    def artifacts(self) -> tuple[Artifact, ...]:
        return tuple(Artifact.of(e) for e in self.raw["artifacts"])

    def openvino(self) -> dict[str, Artifact]:
        """The OpenVINO entries by precision."""
        return {a.precision: a for a in self.artifacts if a.format == "openvino"}

    def peers(self) -> dict[tuple[str, str], Artifact]:
        """The peers' entries (ONNX, LiteRT) by (format, precision)."""
        return {(a.format, a.precision): a for a in self.artifacts if (a.format, a.precision) in PEER_TABLE}

    @property
    def class_names(self) -> list[str] | None:
        return self.raw.get("class_names")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(root: Path, path: Path) -> dict:
    """{"path": relative to root with '/', "bytes", "sha256"}."""
    return {"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": sha256(path)}


def manifest_entry(fmt: str, precision: str, files: list[dict], inference_precision: str | None = None,
             check: dict | None = None, status: str = "ok", reason: str | None = None) -> dict:
    """One manifest entry, as written."""
    return {"format": fmt, "precision": precision, "files": files, "inference_precision": inference_precision,
            "check": check, "status": status, "reason": reason}


def build_manifest(source_path: Path, kind: str, artifacts: list[dict]) -> dict:
    """The manifest of a conversion of `source_path` (`kind`) into `artifacts` (entries made by `manifest_entry`)."""
    from .versions import package_versions

    return {
        "schema_version": contract.MANIFEST_SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"path": str(source_path), "kind": kind},
        "class_names": list(contract.CLASS_NAMES),
        **contract.tensor_specs(),
        "versions": package_versions(),
        "artifacts": artifacts,
    }


def write_manifest(root: str | Path, manifest: dict) -> None:
    write_json(Layout(root).manifest, manifest)


def version_manifest(version_dir: Path, manifest: dict, precision: str) -> dict:
    """The manifest of one version folder holding the `precision` IR as model.xml|bin: the artifact folder's
    manifest with only the entries that load that IR (fp32's and bf16's, for the fp32 IR), the paths made
    relative to the folder."""
    entries = []
    for e in manifest.get("artifacts", []):
        if e.get("format") == "openvino" and _loads_ir(e.get("precision"), precision):
            files = [file_entry(version_dir, p) for p in ir_pair(version_dir)]
            entries.append({**e, "files": files})
    return {**manifest, "artifacts": entries, "repository": {"model": contract.MODEL_NAME, "version": version_dir.name}}


def _loads_ir(precision, ir: str) -> bool:
    return precision == ir or (precision in PRECISION_TABLE and PRECISION_TABLE[precision].ir == ir)


def write_version_manifest(version_dir: Path, manifest: dict, precision: str = "fp32") -> None:
    (version_dir / MANIFEST).write_text(json.dumps(version_manifest(version_dir, manifest, precision), indent=2) + "\n")


def failures(manifest: dict) -> list[Artifact]:
    """The entries of a manifest that did not pass."""
    return [a for a in Manifest(manifest).artifacts if not a.ok]


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def manifest_table(manifest: dict) -> str:
    """One row per artifact: format, precision, size, agreement, max abs diff, accuracy (vs TF), status."""
    lines = [f"{'format':<9} {'precision':<9} {'compute':<7} {'size':>9} {'agreement':>9} {'max|diff|':>9} {'accuracy':>8} "
             f"{'TF acc':>7}  status"]
    for a in manifest["artifacts"]:
        c = a["check"]
        size = _size(sum(f["bytes"] for f in a["files"])) if a["files"] else "-"
        figures = (f"{c['agreement']:>9.4f} {c['max_abs_diff']:>9.1e} {c['accuracy']:>8.4f} {c['reference_accuracy']:>7.4f}"
                   if c else f"{'-':>9} {'-':>9} {'-':>8} {'-':>7}")
        status = a["status"] + (f": {a['reason']}" if a["reason"] else "")
        lines.append(f"{a['format']:<9} {a['precision']:<9} {a['inference_precision'] or '-':<7} {size:>9} {figures}  {status}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ModelFiles:
    """What the runtime needs to compile one precision: the IR path and the class names."""

    xml: Path
    precision: str
    class_names: tuple[str, ...]
    verified: bool


def locate(folder: str | Path, precision: str, verify: bool = True) -> ModelFiles:
    """The verified IR of `precision` in artifact `folder`; every problem is a ModelFileError subclass."""
    folder = Path(folder)
    spec = precision_of(precision)
    if not folder.is_dir():
        what = "is a file, not an artifact folder" if folder.exists() else "does not exist"
        raise ModelFileError(f"model folder {folder} {what}; {CONVERT_HINT}, or pass the folder it wrote")
    sub = spec.ir
    if not verify:
        xml = Layout(folder).ir_xml(precision)
        if not xml.is_file() or not xml.with_suffix(".bin").is_file():
            raise PrecisionNotAvailableError(
                f"{folder} has no {sub} OpenVINO model ({OPENVINO}/{sub}/{IR_XML}|{Path(IR_BIN).suffix[1:]}); {CONVERT_HINT}")
        return ModelFiles(xml, precision, _class_names(folder, None), verified=False)

    manifest = read_manifest(folder).raw
    entries = {e.get("precision"): e for e in manifest["artifacts"] if e.get("format") == "openvino"}
    entry = entries.get(precision)
    if entry is None and sub != precision:
        entry = entries.get(sub)  # not converted with --precision bf16: the fp32 IR is all it needs
    if entry is None:
        have = [p for p, e in entries.items() if e.get("status") == "ok"]
        raise PrecisionNotAvailableError(
            f"{folder} has no {precision} OpenVINO model; it has {', '.join(have) or 'none'} "
            f"(`fmnist-edge convert --precision {precision}` adds it)"
        )
    if entry.get("status") != "ok":
        raise PrecisionNotAvailableError(
            f"{folder}: the {precision} model is marked {entry.get('status')!r} by the converter "
            f"({entry.get('reason') or 'no reason given'}); re-run the conversion or choose another precision"
        )
    files = entry.get("files") or (entries.get(sub) or {}).get("files") or []
    if not files:
        raise ManifestError(f"{folder}/{MANIFEST} lists no files for the {sub} OpenVINO model; {CONVERT_HINT}")
    paths = [verify_file(folder, f) for f in files]
    xml = next((p for p in paths if p.suffix == ".xml"), None)
    if xml is None or not xml.with_suffix(".bin").is_file():
        raise ManifestError(f"{folder}/{MANIFEST} lists no {IR_XML} with its .bin for {sub}; {CONVERT_HINT}")
    return ModelFiles(xml, precision, _class_names(folder, manifest), verified=True)


def usable_precisions(folder: str | Path) -> list[str]:
    """The OpenVINO precisions that `convert` wrote into `folder` and whose check passed (status "ok")."""
    manifest = read_manifest(Path(folder)).raw if Path(folder).is_dir() else locate(folder, "fp32")
    return [e.get("precision") for e in manifest["artifacts"]
            if e.get("format") == "openvino" and e.get("status") == "ok" and e.get("precision") in contract.PRECISIONS]


def read_manifest(folder: str | Path) -> Manifest:
    """`folder`/manifest.json, checked to be one `convert` wrote (ManifestError otherwise)."""
    folder = Path(folder)
    path = Layout(folder).manifest
    if not path.is_file():
        raise ManifestError(
            f"{folder} has no {MANIFEST}, so its model files cannot be verified; {CONVERT_HINT} "
            "(or load with verify=False to skip the check)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} cannot be read ({exc}); {CONVERT_HINT}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), list):
        raise ManifestError(f"{path} has no 'artifacts' list; it is not a manifest written by `fmnist-edge convert`")
    if manifest.get("schema_version") != contract.MANIFEST_SCHEMA:
        raise ManifestError(f"{path} has schema_version {manifest.get('schema_version')!r}; "
                            f"this runtime reads version {contract.MANIFEST_SCHEMA}")
    return Manifest(manifest)


def verify_file(folder: Path, entry: dict) -> Path:
    """Check one manifest file entry (path, bytes, sha256); return its path."""
    rel = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(rel, str) or not rel or PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
        raise ManifestError(f"{folder}/{MANIFEST} has a bad file path {rel!r}; paths must be relative, inside the folder")
    path = folder / rel
    if not path.is_file():
        raise IntegrityError(f"{path} is missing but {MANIFEST} lists it; the artifact folder is incomplete, {CONVERT_HINT}")
    size = path.stat().st_size
    if entry.get("bytes") is not None and size != entry["bytes"]:
        raise IntegrityError(
            f"{path} has {size} bytes, {MANIFEST} records {entry['bytes']}: the file was changed or truncated; {CONVERT_HINT}"
        )
    digest = sha256(path)
    if digest != str(entry.get("sha256", "")).lower():
        raise IntegrityError(
            f"{path} has sha256 {digest[:16]}..., {MANIFEST} records {str(entry.get('sha256'))[:16]}...: "
            f"the file was changed; {CONVERT_HINT}"
        )
    return path


def _class_names(folder: Path, manifest: dict | None) -> tuple[str, ...]:
    """From manifest.json, else the training metadata.json, else the data set's own names."""
    names = (manifest or {}).get("class_names")
    if not names:
        names = read_metadata(folder, strict=False).class_names
    names = tuple(str(n) for n in (names or contract.CLASS_NAMES))
    if len(names) != contract.NUM_CLASSES:
        raise ManifestError(f"{folder}: {len(names)} class names, the model has {contract.NUM_CLASSES} outputs")
    return names


# ------------------------------------------------------------------------------------------- bench.json
def find_row(rows: list[dict], backend: str, precision: str = "fp32", batch: int = 1, mode: str = "sync") -> dict | None:
    """The bench row of `backend` at `precision`, `batch` and `mode` ("sync" | "async"), or None."""
    for r in rows:
        if (r["backend"], r["precision"], r["batch_size"], r["mode"]) == (backend, precision, batch, mode):
            return r
    return None


@dataclass(frozen=True)
class Bench:
    """A read bench.json: `raw` as written, and what its readers ask of it."""

    raw: dict

    @property
    def results(self) -> list[dict]:
        """Its rows, as `benchmarks.bench` writes them (find_row searches them)."""
        return self.raw["results"]

    soak = property(lambda self: self.raw.get("soak"))
    auto = property(lambda self: (self.raw.get("auto") or {}).get("precision", "fp32"))  # what precision auto chose
    machine = property(lambda self: self.raw["machine"])
    cpu = property(lambda self: self.machine.get("cpu"))
    isa = property(lambda self: self.machine.get("isa"))

    def row(self, backend: str, precision: str = "fp32", batch: int = 1, mode: str = "sync") -> dict | None:
        return find_row(self.results, backend, precision, batch, mode)

    def p50_us(self, backend: str, precision: str = "fp32", batch: int = 1) -> float | None:
        """The median latency of the sync row, in microseconds."""
        r = self.row(backend, precision, batch)
        return r["latency_us"]["p50"] if r and r["latency_us"] else None

    def max_throughput(self, backend: str) -> float | None:
        """The best throughput (images/s) of any of `backend`'s rows."""
        tput = [r["throughput_ips"] for r in self.results if r["backend"] == backend and r.get("throughput_ips")]
        return max(tput) if tput else None

    def cold_start(self, backend: str, precision: str = "fp32") -> tuple[float | None, float | None]:
        """(seconds to the first prediction, peak RSS in MB) of a fresh process."""
        r = self.row(backend, precision) or {}
        return r.get("cold_start_s"), r.get("peak_rss_mb")

    def photo_predict_us(self, size: str) -> float | None:
        """The photo path's JPEG -> label time at frame `size` ("vga", ...), when measured."""
        s = next((s for s in (self.raw.get("photos") or {}).get("sizes", []) if s.get("size") == size), None)
        return s["predict_us"] if s else None


def read_bench(path: str | Path) -> Bench:
    """A bench.json file, or the bench/bench.json of an artifact folder."""
    path = Path(path)
    if path.is_dir():
        path = Layout(path).bench_json
    return Bench(json.loads(path.read_text()))
