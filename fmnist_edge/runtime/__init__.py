"""The edge runtime: classify garment images with a converted OpenVINO model, without TensorFlow.

Imports only openvino, numpy and pillow (and fmnist_edge.data / errors, which need nothing more).

    from fmnist_edge.runtime import Classifier
    clf = Classifier.load("artifacts", precision="fp32")
    clf.predict("shirt.jpg")          # Prediction(label='Shirt', index=6, confidence=0.91, top_k=(...))
"""

from ..artifact import sha256
from ..contract import PRECISIONS
from ..errors import (
    ConfigError,
    DeviceError,
    FmnistEdgeError,
    ImageDecodeError,
    ImageNotFoundError,
    ImageShapeError,
    ImageSizeError,
    ImageTypeError,
    ImageValueError,
    InputImageError,
    IntegrityError,
    ManifestError,
    ModelFileError,
    PrecisionNotAvailableError,
)
from .classifier import Classifier, Prediction
from .core import devices, package_versions
from .decode import ACCEPTED, EXTENSIONS, MAX_PIXELS, expand_paths, list_images, to_array
from .preprocess import photo_to_dataset, prepare, to_dataset_form, to_model_input

versions = package_versions  # deprecated: the old name of package_versions

__all__ = [
    "Classifier", "Prediction", "PRECISIONS",
    "to_dataset_form", "prepare", "photo_to_dataset", "to_model_input", "to_array", "list_images", "expand_paths",
    "ACCEPTED", "EXTENSIONS", "MAX_PIXELS", "devices", "package_versions", "versions", "sha256",
    "FmnistEdgeError", "ConfigError", "DeviceError", "ModelFileError", "ManifestError", "IntegrityError",
    "PrecisionNotAvailableError", "InputImageError", "ImageNotFoundError", "ImageDecodeError", "ImageTypeError",
    "ImageShapeError", "ImageSizeError", "ImageValueError",
]
