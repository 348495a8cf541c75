"""Keras model files: the trained model as a plain float32 Keras model in .keras, .h5 and SavedModel, read in safe mode."""

from __future__ import annotations

import os
from pathlib import Path

from ..artifact import Layout
from ..atomic import write_error
from ..contract import INPUT_NAME, INPUT_SHAPE, OUTPUT_NAME
from ..errors import ModelFileError, first_line
from ..quiet import keras as _keras
from ..quiet import tensorflow as _tf
from .devices import dtype_policy
from .models import create_model


def export_twin(model, arch: str, **shape):
    """The trained model (fused batch norm, maybe mixed precision) -> the plain float32 Keras model we save,
    with the same weights; `shape`: create_model's reshaping options it was built with."""
    with dtype_policy("float32"):
        plain = create_model(arch, **shape)
    plain.set_weights(model.get_weights())
    return plain


def save_model(model, folder: Path) -> None:
    """model.keras, model.h5 (legacy HDF5) and saved_model/ (serving signature on float32 [N, 28, 28, 1])."""
    tf, keras = _tf(), _keras()
    layout = Layout(folder)
    target = layout.keras
    try:
        model.save(target)
        target = layout.h5
        model.save(target)
        target = layout.saved_model
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            name="serve",  # also written as serving_default
            fn=lambda image: {OUTPUT_NAME: model(image, training=False)},
            input_signature=[tf.TensorSpec(INPUT_SHAPE, tf.float32, name=INPUT_NAME)],
        )
        archive.write_out(str(target), verbose=False)
    except Exception as exc:  # noqa: BLE001 - Keras, h5py and TensorFlow each raise their own types
        raise write_error(target, exc) from None


def load_keras(path: str | os.PathLike):
    """Load a .keras or .h5 file in Keras' safe mode (no code from the file runs)."""
    keras = _keras()
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file; train one with `fmnist-edge train` or pass a .keras/.h5 file")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        raise ModelFileError(f"{path}: cannot load as a Keras model ({first_line(exc)})") from None
