"""convert(), the one entry point: stages every requested artifact, then moves the checked set into place."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import bounds, data
from ..artifact import (
    CONVERT_WRITES,
    FP16_WEIGHTS,
    INT8_NNCF,
    MANIFEST,
    PRECISION_TABLE,
    Layout,
    build_manifest,
    failures,
    file_entry,
    manifest_entry,
    peer_precisions,
    write_manifest,
    write_version_manifest,
)
from ..atomic import atomic_dir
from ..bounds import bounded
from ..contract import DEFAULT_FORMATS, DEFAULT_PRECISIONS, FORMATS, IR_PRECISIONS, PRECISIONS
from ..errors import ArtifactError, ConfigError, ConversionError, FmnistEdgeError, first_line
from . import check as checks
from .onnx_export import DEFAULT_OPSET, OPSETS
from .source import locate

OWNED = CONVERT_WRITES  # what convert writes in --out and replaces on a re-run
TEST_SIZE = 10_000


def to_model_input(x):
    """The runtime's preprocessing, imported when a conversion runs: the CLI reads ConvertConfig without OpenVINO."""
    from ..runtime.preprocess import to_model_input as prepare

    return prepare(x)


def parse_list(value, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """'a,b' or an iterable -> a tuple in `known`'s order; an unknown name raises ConfigError naming the known ones."""
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    unknown = [v for v in items if v not in known]
    if unknown or not items:
        raise ConfigError(f"unknown {what}: {', '.join(map(repr, unknown)) or '(none given)'}; choose from {', '.join(known)}")
    return tuple(k for k in known if k in items)


@dataclass(frozen=True)
class ConvertConfig:
    """What one conversion writes and how strictly it checks it; checked once, when it is made."""

    formats: tuple[str, ...] = DEFAULT_FORMATS
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS  # OpenVINO's; bf16 is the fp32 IR computed in bf16. int8 and fp16
    # also ask for the peers' own (onnx int8, tflite fp16 and int8) where their format is asked for
    opset: int = DEFAULT_OPSET  # ONNX
    calib_size: int = bounded(300, 1, 50_000, unit="images")  # INT8 calibration images from the training split
    check: int = bounded(1000, 1, unit="test images", note="or 'all'")  # test images each artifact is checked on
    max_drop: float = bounded(0.01, 0, 1, note="an absolute accuracy drop")  # largest INT8 accuracy drop allowed
    data_dir: str | None = None

    def __post_init__(self) -> None:
        parse_list(self.formats, FORMATS, "formats")
        parse_list(self.precisions, PRECISIONS, "precisions")
        if self.opset not in OPSETS:
            raise ConfigError(f"--opset {self.opset} is not supported; choose {OPSETS.start}..{OPSETS.stop - 1} "
                              f"(default {DEFAULT_OPSET})")
        bounds.check(self, options=True)  # calib_size, check, max_drop: the ranges declared with them above

    @classmethod
    def from_options(cls, formats=DEFAULT_FORMATS, precisions=DEFAULT_PRECISIONS, opset=None, calib_size=None, check=None,
                     max_drop=None, data_dir=None) -> ConvertConfig:
        """As the command line gives them: comma lists ('openvino,onnx'), `check` a number or 'all'; None: the default."""
        if isinstance(check, str):
            word = check.strip().lower()
            if word == "all":
                check = TEST_SIZE
            else:
                try:
                    check = int(word)
                except ValueError:
                    raise ConfigError(f"--check must be a number of test images or 'all', got {check!r}") from None
        given = {"opset": opset, "calib_size": calib_size, "check": check, "max_drop": max_drop}
        return cls(parse_list(formats, FORMATS, "formats"), parse_list(precisions, PRECISIONS, "precisions"),
                   data_dir=data_dir, **{k: v for k, v in given.items() if v is not None})


def convert(model, out=None, formats=DEFAULT_FORMATS, precisions=DEFAULT_PRECISIONS, opset=None, calib_size=None,
            check=None, max_drop=None, data_dir=None, log=print) -> dict:
    """Convert `model` (artifact folder, SavedModel folder, .keras/.h5 file) to OpenVINO IR, ONNX and LiteRT under
    `out` (the peers' own int8 and fp16 too, where those precisions are asked for), check each artifact against
    TensorFlow, write manifest.json and return it. An option left None: ConvertConfig's.

    Raises ConversionError (with the manifest as `.manifest`, after writing) when an artifact failed its check."""
    cfg = ConvertConfig.from_options(formats, precisions, opset, calib_size, check, max_drop, data_dir)
    path, _, _ = locate(model)  # fails fast on a missing path, before TensorFlow loads
    out = Path(out) if out is not None else path.parent  # the artifact folder, or the folder that holds the model
    if out.exists() and not out.is_dir():
        raise ArtifactError(f"--out {out} is a file; give a folder")
    previous = {name for name in OWNED if (out / name).exists()}
    # The whole of --out is staged (what convert does not own carried over as hard links) and swapped in at once:
    # a reader, or a kill at any moment, sees the previous set or the new one, never a mix.
    with atomic_dir(out, keep=lambda name: name not in OWNED) as stage:
        work = stage / ".work"
        work.mkdir()
        manifest = _Conversion(model, cfg, stage, out, log).run(work)
        shutil.rmtree(work)
        for name in sorted(previous - {p.name for p in stage.iterdir()}):
            log(f"removed the old {out / name} (not requested this time)")
    failed, n = failures(manifest), len(manifest["artifacts"])
    log(f"wrote {n} artifacts to {out}/ ({MANIFEST}), {n - len(failed)} ok")
    if failed:
        exc = ConversionError(f"written to {out}/, but {len(failed)} artifact(s) did not pass (marked in {MANIFEST}): "
                              + "; ".join(f"{a.format} {a.precision}: {a.reason}" for a in failed))
        exc.manifest = manifest
        raise exc
    return manifest


class _Conversion:
    """One run of `convert`: the source, the test images every artifact is checked on, and the artifacts so far."""

    def __init__(self, model, cfg: ConvertConfig, stage: Path, out: Path, log):
        self.model, self.cfg, self.stage, self.out, self.log = model, cfg, stage, out, log
        self.artifacts: list[dict] = []

    def run(self, work: Path) -> dict:
        from .source import prepare

        t0 = time.perf_counter()
        self.ds = data.load(self.cfg.data_dir)
        n_check = min(self.cfg.check, len(self.ds.y_test))
        self.x_check = to_model_input(self.ds.x_test[:n_check])  # (N, 28, 28, 1) float32 in [0, 1]
        self.y_check = self.ds.y_test[:n_check].astype(np.int64)
        self.source = prepare(self.model, work, self.x_check[:64])
        for note in self.source.notes:
            self.log(f"note: {note}")
        self.log(f"source: {self.source.path} ({self.source.kind}); checking on {n_check} test images")
        self.reference = self.source.reference(self.x_check)
        if "openvino" in self.cfg.formats:
            self.openvino()
        if "onnx" in self.cfg.formats:
            self.onnx()
        if "tflite" in self.cfg.formats:
            self.tflite()
        manifest = build_manifest(self.source.path, self.source.kind, self.artifacts)
        write_manifest(self.stage, manifest)
        version_dir = Layout(self.stage).serving_version()
        if version_dir.is_dir():  # the serving layout's version verifies on its own, with the fp32 check's figures
            write_version_manifest(version_dir, manifest, "fp32")
        self.log(f"converted and checked in {time.perf_counter() - t0:.0f} s")
        return manifest

    def record(self, fmt: str, precision: str, files: list[Path], run) -> None:
        """Check one written artifact against TensorFlow; `run()` -> (probabilities, inference_precision)."""
        entries = [file_entry(self.stage, f) for f in files]
        inference = c = None
        try:
            probs, inference = run()
            c = checks.compare(self.reference, probs, self.y_check)
            status, reason = checks.verdict(precision, fmt, c, self.cfg.max_drop)
        except FmnistEdgeError as exc:
            status, reason = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot load the artifact is a failed artifact
            status, reason = "failed", f"cannot run it: {first_line(exc, 300)}"
        self.artifacts.append(manifest_entry(fmt, precision, entries, inference, c, status, reason))
        figures = f"agreement {c['agreement']:.4f}, max abs diff {c['max_abs_diff']:.1e}, accuracy {c['accuracy']:.4f}" if c else ""
        details = (f" ({figures})" if figures else "") + (f": {reason}" if reason else "")
        self.log(f"{fmt} {precision}: {status}{details}")

    def failed(self, fmt: str, precision: str, exc: Exception) -> None:
        """An artifact that could not be written at all."""
        self.artifacts.append(manifest_entry(fmt, precision, [], status="failed", reason=first_line(exc, 300)))
        self.log(f"{fmt} {precision}: failed: {first_line(exc, 300)}")

    def onnx(self) -> None:
        from .onnx_export import export_onnx

        try:
            path = export_onnx(self.source.saved_model, Layout(self.stage).onnx_file, self.cfg.opset)
        except ArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001
            self.failed("onnx", "fp32", exc)
            return
        self.record("onnx", "fp32", [path], lambda: (checks.onnx_probs(path, self.x_check), None))
        if "int8" in self.cfg.precisions:
            self.peer("onnx", "int8", lambda out: self._onnx_int8(path, out), checks.onnx_probs)

    def _onnx_int8(self, fp32: Path, out: Path) -> Path:
        from .onnx_quantize import quantize_onnx

        calib = self.calibration()
        quantize_onnx(fp32, out, calib)
        self.log(f"onnx int8: onnxruntime static QDQ quantization, per channel, calibrated on {len(calib)} "
                 "training-split images (NNCF's)")
        return out

    def tflite(self) -> None:
        for p in peer_precisions("tflite"):
            if p == "fp32" or p in self.cfg.precisions:
                self.peer("tflite", p, lambda out, p=p: self._tflite(out, p), checks.tflite_probs)

    def _tflite(self, out: Path, precision: str) -> Path:
        from .tflite_export import export_tflite

        calib = self.calibration() if precision == "int8" else None
        export_tflite(self.source.saved_model, out, precision, calib)
        if calib is not None:
            self.log(f"tflite int8: full-integer quantization calibrated on {len(calib)} training-split images (NNCF's)")
        return out

    def peer(self, fmt: str, precision: str, write, probs) -> None:
        """Write one peer model with `write(path)`, then check it in its own runtime (`probs(path, images)`)."""
        try:
            path = write(Layout(self.stage).peer_file(fmt, precision))
        except ArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001 - a converter or quantizer that fails is a failed artifact
            self.failed(fmt, precision, exc)
        else:
            self.record(fmt, precision, [path], lambda: (probs(path, self.x_check), None))

    def calibration(self) -> np.ndarray:
        """The int8 calibration images, chosen once per conversion and shared by NNCF, onnxruntime and LiteRT."""
        if getattr(self, "_calib", None) is None:
            from .quantize import calibration_set

            self._calib = calibration_set(self.ds, self.source.metadata.config, self.cfg.calib_size)
        return self._calib

    def openvino(self) -> None:
        from .openvino_ir import convert_ir
        from .serving import serve_command, write_serving

        precisions = [p for p in PRECISIONS if p in self.cfg.precisions]
        try:
            model = convert_ir(self.source.saved_model)
        except Exception as exc:  # noqa: BLE001
            for p in precisions:
                self.failed("openvino", p, exc)
            return
        layout = Layout(self.stage)
        for ir in IR_PRECISIONS:  # each IR written once, then checked at every precision that loads it (fp32: bf16 too)
            users = [p for p in precisions if PRECISION_TABLE[p].ir == ir]
            if not users:
                continue
            try:
                files = self.write_ir(model, ir, layout.ir_dir(ir))
            except ArtifactError:
                raise
            except Exception as exc:  # noqa: BLE001 - a quantization that fails is a failed artifact
                for p in users:
                    self.failed("openvino", p, exc)
                continue
            for p in users:  # run at once by record(): the loop's current IR and precision
                compute = PRECISION_TABLE[p].compute
                self.record("openvino", p, files, lambda xml=files[0], t=compute: checks.openvino_probs(xml, self.x_check, t))
            if ir == "fp32":
                try:
                    write_serving(layout.serving, files)
                except OSError as exc:
                    raise ArtifactError(f"cannot write the serving layout: {exc.strerror or exc}") from None
                serving = Layout(self.out).serving
                self.log(f"serving layout: {serving}/ (serve it with: {serve_command(serving)})")

    def write_ir(self, model, ir: str, folder: Path) -> list[Path]:
        """The IR `ir` written into `folder` with the compression its row of the precision table names."""
        from .openvino_ir import save_ir

        compression = PRECISION_TABLE[ir].compression
        if compression != INT8_NNCF:
            return save_ir(model, folder, compress_to_fp16=compression == FP16_WEIGHTS)
        from .quantize import quantize_ir

        calib = self.calibration()
        files = save_ir(quantize_ir(model, calib), folder, compress_to_fp16=False)
        self.log(f"int8: NNCF post-training quantization calibrated on {len(calib)} training-split images")
        return files
