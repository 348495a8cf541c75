"""Keras model files: the trained model as the plain float32 Keras model, written as .keras, .h5 and a SavedModel, read back in safe mode."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelFileError
from ..quiet import keras as _keras
from ..quiet import tensorflow as _tf
from .devices import dtype_policy
from .models import INPUT_NAME, OUTPUT_NAME, create_model


def export_twin(model, arch: str):
    """The trained model (fused batch norm, maybe mixed precision) -> the plain float32 Keras model we save,
    with the same weights."""
    with dtype_policy("float32"):
        plain = create_model(arch)
    plain.set_weights(model.get_weights())
    return plain


def save_model(model, folder: Path) -> None:
    """model.keras, model.h5 (legacy HDF5) and saved_model/ (serving signature on float32 [N, 28, 28, 1])."""
    tf, keras = _tf(), _keras()
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",  # also written as serving_default
        fn=lambda image: {OUTPUT_NAME: model(image, training=False)},
        input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(str(folder / "saved_model"), verbose=False)


def load_keras(path: str | os.PathLike):
    """Load a .keras or .h5 file in Keras' safe mode (no code from the file runs)."""
    keras = _keras()
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file; train one with `fmnist-edge train` or pass a .keras/.h5 file")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: cannot load as a Keras model ({msg[:200]})") from None
