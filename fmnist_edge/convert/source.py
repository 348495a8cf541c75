"""The model to convert, pinned as one canonical SavedModel: input `image` [N,28,28,1], output `probabilities` [N,10]."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import contract
from ..artifact import H5, KERAS, SAVED_MODEL, SAVED_MODEL_PB, Layout, Metadata, read_metadata
from ..contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAME
from ..errors import ModelFileError, first_line
from ..quiet import keras as _keras
from ..quiet import quiet, tensorflow

SIGNATURE = "serving_default"
KINDS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}


@dataclass
class Source:
    """What convert works from: `saved_model` always has input `image` and output `probabilities`."""

    path: Path  # what the user pointed at (resolved to the SavedModel or the Keras file)
    kind: str  # saved_model | keras | h5
    saved_model: Path
    metadata: Metadata = field(default_factory=Metadata)  # train's, when the model came from an artifact folder
    notes: list[str] = field(default_factory=list)
    _fn: object = field(default=None, init=False, repr=False)  # the loaded serving signature, once

    def reference(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """(N, 28, 28, 1) float32 -> (N, 10) float32 probabilities from the canonical SavedModel."""
        tf = tensorflow()
        if self._fn is None:
            with quiet():
                self._fn = tf.saved_model.load(str(self.saved_model)).signatures[SIGNATURE]
        outs = [self._fn(**{INPUT_NAME: tf.constant(images[i : i + batch_size])})[OUTPUT_NAME].numpy()
                for i in range(0, len(images), batch_size)]
        return np.concatenate(outs).astype(np.float32)


def locate(model: str | Path) -> tuple[Path, str, Metadata]:
    """(model path, kind, train metadata) for an artifact folder, a SavedModel folder or a Keras file."""
    path = Path(model).expanduser().absolute()
    hint = "point at a folder written by `fmnist-edge train`, a SavedModel folder or a .keras/.h5 file"
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or folder; {hint}")
    metadata = Metadata()
    if path.is_dir():
        # only the calibration split's seed comes from it: an unreadable one reads as empty, the model is what counts
        metadata = read_metadata(path, strict=False)
        layout = Layout(path)
        if (layout.saved_model / SAVED_MODEL_PB).is_file():
            return layout.saved_model, "saved_model", metadata
        if (path / SAVED_MODEL_PB).is_file():
            return path, "saved_model", metadata
        for name in (KERAS, H5):
            if (path / name).is_file():
                return path / name, KINDS[Path(name).suffix], metadata
        raise ModelFileError(f"{path}: holds no {SAVED_MODEL}/, {SAVED_MODEL_PB} or {KERAS}; {hint}")
    if path.suffix.lower() not in KINDS:
        raise ModelFileError(f"{path}: not a .keras or .h5 file; {hint}")
    return path, KINDS[path.suffix.lower()], metadata



def _check_shapes(path: Path, in_shape, out_shape, in_dtype: str) -> bool:
    """Raise ModelFileError unless input is (N, 28, 28, 1) (or (N, 28, 28)) float32 and output is (N, 10).
    Returns whether the input lacks the channel axis."""
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    squeeze = _fits(in_shape, INPUT_SHAPE[:3])
    if not (_fits(in_shape, INPUT_SHAPE) or squeeze):
        raise ModelFileError(f"{path}: the model takes input of shape {_shape(in_shape)}, "
                             f"but Fashion-MNIST models take {contract.input_shape_text()}")
    if in_dtype != "float32":
        raise ModelFileError(f"{path}: the model takes {in_dtype} input; a float32 {contract.input_shape_text()} input in [0, 1] is needed")
    if len(out_shape) != 2 or out_shape[1] != contract.NUM_CLASSES:
        raise ModelFileError(f"{path}: the model outputs shape {_shape(out_shape)}, "
                             f"but {contract.NUM_CLASSES} class scores [N, {contract.NUM_CLASSES}] are needed")
    if in_shape[0] is not None:
        raise ModelFileError(f"{path}: the model's batch size is fixed at {in_shape[0]}; export it with a dynamic batch (None)")
    return squeeze


def _fits(shape: tuple, want: tuple) -> bool:
    """Same rank, and every non-batch dimension equal or unknown (None)."""
    return len(shape) == len(want) and all(s is None or s == w for s, w in zip(shape[1:], want[1:], strict=True))


def _shape(shape) -> str:
    return "[" + ", ".join("N" if i == 0 and s is None else ("?" if s is None else str(s)) for i, s in enumerate(shape)) + "]"


def _are_probabilities(out: np.ndarray) -> bool:
    return bool(np.all(out >= -1e-6) and np.all(out <= 1 + 1e-6) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


def prepare(model: str | Path, workdir: Path, sample: np.ndarray) -> Source:
    """Load and validate `model`; re-export it into `workdir` unless it already is a canonical SavedModel.

    `sample`: a few (N, 28, 28, 1) float32 images, to tell probabilities from logits (a softmax is appended to logits).
    """
    path, kind, metadata = locate(model)
    if kind == "saved_model":
        return _from_saved_model(path, workdir, sample, metadata)
    return _from_keras(path, kind, workdir, sample, metadata)


def _from_saved_model(path: Path, workdir: Path, sample: np.ndarray, metadata: Metadata) -> Source:
    tf = tensorflow()
    try:
        with quiet():
            loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # noqa: BLE001 - TF raises many types for a damaged SavedModel
        raise ModelFileError(f"{path}: cannot load the SavedModel ({first_line(exc)}); "
                             "it is corrupt or incomplete, export it again") from None
    sigs = dict(loaded.signatures)
    if not sigs:
        raise ModelFileError(f"{path}: the SavedModel has no serving signature; export it with one (e.g. keras' model.export)")
    fn = sigs.get(SIGNATURE) or next(iter(sigs.values()))
    inputs = fn.structured_input_signature[1]
    outputs = fn.structured_outputs
    n_out = len(outputs) if isinstance(outputs, dict) else 1
    if len(inputs) != 1 or not isinstance(outputs, dict) or n_out != 1:
        raise ModelFileError(f"{path}: the serving signature has {len(inputs)} named input(s) and {n_out} "
                             "named output(s); one of each is needed")
    (in_key, in_spec), (out_key, out_spec) = next(iter(inputs.items())), next(iter(outputs.items()))
    squeeze = _check_shapes(path, in_spec.shape.as_list(), out_spec.shape.as_list(), in_spec.dtype.name)
    x = sample[..., 0] if squeeze else sample
    try:
        out = fn(**{in_key: tf.constant(x)})[out_key].numpy()
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{path}: the SavedModel fails on 28x28 images ({first_line(exc)})") from None
    softmax = not _are_probabilities(out)
    source = Source(path, "saved_model", path, metadata)
    if softmax:
        source.notes.append("the model outputs logits: a softmax is appended so that `probabilities` are probabilities")
    canonical = (in_key, out_key, squeeze, softmax, in_spec.shape.as_list()) == (INPUT_NAME, OUTPUT_NAME, False, False, list(INPUT_SHAPE))
    if canonical and SIGNATURE in sigs:
        return source

    class Canonical(tf.Module):
        def __init__(self):
            super().__init__()
            self.loaded = loaded  # tracked, so its variables are saved

        @tf.function(input_signature=[tf.TensorSpec(INPUT_SHAPE, tf.float32, name=INPUT_NAME)])
        def serve(self, image):
            y = fn(**{in_key: image[..., 0] if squeeze else image})[out_key]
            y = tf.cast(y, tf.float32)
            return {OUTPUT_NAME: tf.nn.softmax(y) if softmax else y}

    module = Canonical()
    source.saved_model = workdir / SAVED_MODEL
    try:
        with quiet():
            tf.saved_model.save(module, str(source.saved_model), signatures={SIGNATURE: module.serve})
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{path}: cannot re-export the SavedModel with our tensor names ({first_line(exc)})") from None
    source.notes.append(f"re-exported with input `{INPUT_NAME}` and output `{OUTPUT_NAME}` (was `{in_key}` / `{out_key}`)")
    return source


def _from_keras(path: Path, kind: str, workdir: Path, sample: np.ndarray, metadata: Metadata) -> Source:
    from ..train.modelio import load_keras

    tf = tensorflow()
    keras = _keras()
    with quiet():
        model = load_keras(path)  # safe mode: a model file cannot run code
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelFileError(f"{path}: the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; one of each is needed")
    squeeze = _check_shapes(path, model.inputs[0].shape, model.outputs[0].shape, str(model.inputs[0].dtype).replace("tf.", ""))
    x = sample[..., 0] if squeeze else sample
    try:
        out = np.asarray(model(x, training=False))
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{path}: the model fails on 28x28 images ({first_line(exc)})") from None
    softmax = not _are_probabilities(out)
    source = Source(path, kind, workdir / SAVED_MODEL, metadata)
    if softmax:
        source.notes.append("the model outputs logits: a softmax is appended so that `probabilities` are probabilities")

    def serve(image):
        y = tf.cast(model(image[..., 0] if squeeze else image, training=False), tf.float32)
        return {OUTPUT_NAME: tf.nn.softmax(y) if softmax else y}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=serve, input_signature=[tf.TensorSpec(INPUT_SHAPE, tf.float32, name=INPUT_NAME)])
    try:
        with quiet():
            archive.write_out(str(source.saved_model), verbose=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{path}: cannot export the Keras model to a SavedModel ({first_line(exc)})") from None
    return source
