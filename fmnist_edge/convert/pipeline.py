"""convert(), the one entry point: stages every requested artifact, then moves the checked set into place."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import data
from ..atomic import write_json
from ..contract import FIRST_VERSION, MODEL_NAME
from ..errors import ArtifactError, ConfigError, ConversionError, FmnistEdgeError
from ..runtime.manifest import PRECISIONS  # bf16: the fp32 IR computed in bf16 (a runtime mode, no files of its own)
from . import check as checks
from . import manifest as mf
from .onnx_export import DEFAULT_OPSET, OPSETS
from .serving import write_version_manifest
from .source import locate

FORMATS = ("openvino", "onnx")
DEFAULT_PRECISIONS = ("fp32", "fp16", "int8")
OWNED_DIRS = ("openvino", "onnx", "serving")  # with manifest.json, what convert writes in --out and replaces on a re-run
TEST_SIZE = 10_000


def parse_list(value, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """'a,b' or an iterable -> a tuple in `known`'s order; an unknown name raises ConfigError naming the known ones."""
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = [v for v in items if v not in known]
    if unknown or not items:
        raise ConfigError(f"unknown {what}: {', '.join(map(repr, unknown)) or '(none given)'}; choose from {', '.join(known)}")
    return tuple(k for k in known if k in items)


def _validate(formats, precisions, opset, calib_size, check, max_drop):
    formats = parse_list(formats, FORMATS, "formats")
    precisions = parse_list(precisions, PRECISIONS, "precisions")
    opset = DEFAULT_OPSET if opset is None else opset
    if opset not in OPSETS:
        raise ConfigError(f"--opset {opset} is not supported; choose {OPSETS.start}..{OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    if not isinstance(calib_size, int) or not 1 <= calib_size <= 50_000:
        raise ConfigError(f"--calib-size must be in 1..50000 images, got {calib_size}")
    if isinstance(check, str):
        if check.strip().lower() != "all":
            try:
                check = int(check)
            except ValueError:
                raise ConfigError(f"--check must be a number of test images or 'all', got {check!r}") from None
        else:
            check = TEST_SIZE
    if not 1 <= check:
        raise ConfigError(f"--check must be at least 1 test image (or 'all'), got {check}")
    if not 0.0 <= max_drop <= 1.0:
        raise ConfigError(f"--max-drop is an absolute accuracy drop in [0, 1], got {max_drop}")
    return formats, precisions, opset, check


def _stage_dir(out: Path) -> Path:
    """A fresh hidden folder inside `out` (same file system, so the final moves are renames)."""
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"--out {out} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".convert-tmp-", dir=out))
    except OSError as exc:
        raise ArtifactError(f"cannot write in {out}: {exc.strerror or exc}; choose a writable --out") from None
    os.chmod(stage, 0o755)
    return stage


def _place(stage: Path, out: Path, log=print) -> None:
    """Replace convert's own entries in `out` with the staged ones; train's files are never touched.
    The manifest goes first and comes last, so a reader never sees one that lists missing files."""
    trash = Path(tempfile.mkdtemp(prefix=".convert-old-", dir=out))
    try:
        for name in (mf.FILENAME, *OWNED_DIRS):
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, trash / name)
        for name in (*OWNED_DIRS, mf.FILENAME):
            if (stage / name).exists():
                os.replace(stage / name, out / name)
            elif (trash / name).exists():
                log(f"removed the old {out / name} (not requested this time)")
    except OSError as exc:
        for old in trash.iterdir():  # put the previous artifacts back where nothing new took their place
            if not (out / old.name).exists():
                os.replace(old, out / old.name)
        raise ArtifactError(f"cannot move the artifacts into {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def convert(model, out=None, formats=FORMATS, precisions=DEFAULT_PRECISIONS, opset=None, calib_size=300,
            check=1000, max_drop=0.01, data_dir=None, log=print) -> dict:
    """Convert `model` (artifact folder, SavedModel folder, .keras/.h5 file) to OpenVINO IR and ONNX under `out`,
    check each artifact against TensorFlow, write manifest.json and return it.

    Raises ConversionError (with the manifest as `.manifest`, after writing) when an artifact failed its check."""
    formats, precisions, opset, n_check = _validate(formats, precisions, opset, calib_size, check, max_drop)
    path, _, _ = locate(model)  # fails fast on a missing path, before TensorFlow loads
    out = Path(out) if out is not None else path.parent  # the artifact folder, or the folder that holds the model
    created = not out.exists()
    stage = _stage_dir(out)
    try:
        with tempfile.TemporaryDirectory(prefix="fmnist-convert-") as work:
            manifest = _convert(model, stage, Path(work), formats, precisions, opset, calib_size, n_check, max_drop, data_dir, log)
        _place(stage, out, log)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)  # a folder made for this run goes with it
        raise
    shutil.rmtree(stage, ignore_errors=True)
    failed = [a for a in manifest["artifacts"] if a["status"] != "ok"]
    log(f"wrote {len(manifest['artifacts'])} artifacts to {out}/ ({mf.FILENAME}), {len(manifest['artifacts']) - len(failed)} ok")
    if failed:
        exc = ConversionError(f"written to {out}/, but {len(failed)} artifact(s) did not pass (marked in {mf.FILENAME}): "
                              + "; ".join(f"{a['format']} {a['precision']}: {a['reason']}" for a in failed))
        exc.manifest = manifest
        raise exc
    return manifest


def _images(uint8: np.ndarray) -> np.ndarray:
    """Dataset-form uint8 (N, 28, 28) -> (N, 28, 28, 1) float32 in [0, 1], through the runtime's preprocessing."""
    try:
        from ..runtime.preprocess import to_model_input
    except ImportError:  # a checkout without the runtime: the same arithmetic, from the data module
        return data.normalize(uint8)
    return to_model_input(uint8)


def _convert(model, stage, work, formats, precisions, opset, calib_size, n_check, max_drop, data_dir, log) -> dict:
    from .source import prepare

    t0 = time.perf_counter()
    ds = data.load(data_dir)
    n_check = min(n_check, len(ds.y_test))
    x_check, y_check = _images(ds.x_test[:n_check]), ds.y_test[:n_check].astype(np.int64)
    source = prepare(model, work, x_check[:64])
    for note in source.notes:
        log(f"note: {note}")
    log(f"source: {source.path} ({source.kind}); checking on {n_check} test images")
    reference = source.reference(x_check)
    artifacts = []

    def record(fmt, precision, files, run):
        """Check one written artifact; `run()` -> (probabilities, inference_precision)."""
        entry = mf.artifact(fmt, precision, [mf.file_entry(stage, f) for f in files])
        try:
            probs, entry["inference_precision"] = run()
            entry["check"] = checks.compare(reference, probs, y_check)
            entry["status"], entry["reason"] = checks.verdict(precision, fmt, entry["check"], max_drop)
        except FmnistEdgeError as exc:
            entry["status"], entry["reason"] = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot load the artifact is a failed artifact
            entry["status"], entry["reason"] = "failed", f"cannot run it: {_first_line(exc)}"
        artifacts.append(entry)
        c = entry["check"]
        figures = f"agreement {c['agreement']:.4f}, max abs diff {c['max_abs_diff']:.1e}, accuracy {c['accuracy']:.4f}" if c else ""
        log(f"{fmt} {precision}: {entry['status']}{' (' + figures + ')' if figures else ''}{': ' + entry['reason'] if entry['reason'] else ''}")

    def failed(fmt, precision, exc):
        artifacts.append(mf.artifact(fmt, precision, [], status="failed", reason=_first_line(exc)))
        log(f"{fmt} {precision}: failed: {_first_line(exc)}")

    if "openvino" in formats:
        _openvino(source, stage, precisions, calib_size, ds, x_check, record, failed, log)
    if "onnx" in formats:
        from .onnx_export import FILENAME, export_onnx

        try:
            onnx_path = export_onnx(source.saved_model, stage / "onnx" / FILENAME, opset)
        except ArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001
            failed("onnx", "fp32", exc)
        else:
            record("onnx", "fp32", [onnx_path], lambda: (checks.onnx_probs(onnx_path, x_check), None))
    manifest = mf.build(source.path, source.kind, artifacts)
    write_json(stage / mf.FILENAME, manifest)
    version_dir = stage / "serving" / MODEL_NAME / FIRST_VERSION
    if version_dir.is_dir():  # the serving layout's version verifies on its own, with the fp32 check's figures
        write_version_manifest(version_dir, manifest, "fp32")
    log(f"converted and checked in {time.perf_counter() - t0:.0f} s")
    return manifest


def _openvino(source, stage, precisions, calib_size, ds, x_check, record, failed, log) -> None:
    from .openvino_ir import convert_ir, save_ir
    from .serving import serve_command, write_serving

    try:
        model = convert_ir(source.saved_model)
    except Exception as exc:  # noqa: BLE001
        for p in precisions:
            failed("openvino", p, exc)
        return
    ir = stage / "openvino"
    if {"fp32", "bf16"} & set(precisions):
        fp32 = save_ir(model, ir / "fp32", compress_to_fp16=False)
        if "fp32" in precisions:
            record("openvino", "fp32", fp32, lambda: checks.openvino_probs(fp32[0], x_check, "f32"))
        if "bf16" in precisions:
            record("openvino", "bf16", fp32, lambda: checks.openvino_probs(fp32[0], x_check, "bf16"))
        try:
            write_serving(stage / "serving", fp32)
        except OSError as exc:
            raise ArtifactError(f"cannot write the serving layout: {exc.strerror or exc}") from None
        log(f"serving layout: {stage.parent / 'serving'}/ (serve it with: {serve_command(stage.parent / 'serving')})")
    if "fp16" in precisions:
        fp16 = save_ir(model, ir / "fp16", compress_to_fp16=True)
        record("openvino", "fp16", fp16, lambda: checks.openvino_probs(fp16[0], x_check, "f32"))
    if "int8" in precisions:
        from .quantize import calibration_images, quantize_ir

        cfg = source.metadata.get("config") or {}
        try:
            calib = _images(calibration_images(ds, calib_size, cfg.get("val_fraction", 0.1), cfg.get("seed", 0)))
            int8 = save_ir(quantize_ir(model, calib), ir / "int8", compress_to_fp16=False)
        except ArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001
            failed("openvino", "int8", exc)
        else:
            log(f"int8: NNCF post-training quantization calibrated on {len(calib)} training-split images")
            record("openvino", "int8", int8, lambda: checks.openvino_probs(int8[0], x_check, "f32"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
