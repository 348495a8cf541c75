"""The one error hierarchy of fmnist-edge: every failure a user can cause is a subclass of FmnistEdgeError."""

from __future__ import annotations

from .contract import INSTALL_TRAIN


class FmnistEdgeError(Exception):
    """Base class: the message is one line that says what was wrong and how to fix it."""


class DataError(FmnistEdgeError):
    """The data set is missing, truncated, corrupt or inconsistent."""


class ConfigError(FmnistEdgeError):
    """An option or config value is unknown or out of range."""


class UnknownModelError(ConfigError):
    """An architecture name that the registry does not know."""


class ModelFileError(FmnistEdgeError):
    """A model file or artifact folder is missing, unreadable, corrupt or of the wrong shape."""


class ArtifactError(FmnistEdgeError):
    """An output folder or file cannot be written."""


class TrainingInterrupted(FmnistEdgeError):
    """Training was stopped by the user (Ctrl-C); the message says where its state is and how to go on."""


class ConversionError(FmnistEdgeError):
    """A conversion failed or its numerical check did not pass."""


class InputImageError(FmnistEdgeError):
    """An image handed to the runtime cannot be read or has the wrong form."""

    index: int | None = None  # set when the image is one item of a batch
    reason: str | None = None  # then: the message without the "image N: " that names the item


class ImageNotFoundError(InputImageError):
    """An image path that does not exist, is a folder or cannot be opened."""


class ImageDecodeError(InputImageError):
    """Empty, truncated or non-image data, or an image format the runtime does not read."""


class ImageTypeError(InputImageError):
    """A Python type or array dtype that is not an image (lists, bool or complex arrays, ...)."""


class ImageShapeError(InputImageError):
    """An array with the wrong number of dimensions or channels."""


class ImageSizeError(InputImageError):
    """A 0-sized image, or one too large to decode safely (decompression-bomb guard)."""


class ImageValueError(InputImageError):
    """NaN or inf pixels, values outside the accepted range, or a flat image with nothing to classify."""


class ManifestError(ModelFileError):
    """manifest.json is missing, unreadable or does not describe the files it should."""


class IntegrityError(ModelFileError):
    """A model file is missing or differs from the size and sha256 that manifest.json records."""


class SignatureError(ModelFileError):
    """A version's signature is missing, invalid or made by an untrusted key, or a file differs from what was signed."""


class StoreError(FmnistEdgeError):
    """A remote model store (s3://, gs://, https://, file://) cannot be reached, read or written, or its scheme is not supported."""


class GoldenSetError(ModelFileError):
    """A version's model does not give the answers its golden set records (golden.json), so it may not serve."""


class ControlError(FmnistEdgeError):
    """A repository-control request (the protocol's load or unload) that cannot be done: a version that is not in the
    repository or that fails its gates, or a server that serves one fixed model."""


class PrecisionNotAvailableError(ModelFileError):
    """The artifact folder holds no usable model of the precision asked for."""


class DeviceError(FmnistEdgeError):
    """An OpenVINO device that is not present, or that cannot compile the model."""


class MissingDependencyError(FmnistEdgeError):
    """An optional dependency (the [train] or [kiosk] extra) is not installed."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message, at most `limit` characters (its type when empty):
    how a third-party error appears inside one of ours."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


def check_int(name: str, value, low: int = 1, high: int | None = None, *, optional: bool = False) -> None:
    """The one check of an integer option: ConfigError("`name` must be a positive integer, got ...") unless
    `value` is an int (not a bool) in low..high; `optional` lets None through."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        if high is not None:
            what = f"an integer from {low} to {high}"
        else:
            what = {1: "a positive integer", 0: "a non-negative integer"}.get(low, f"an integer of at least {low}")
        raise ConfigError(f"{name} must be {what}{' or None' if optional else ''}, got {value!r}")


def require(module: str, extra_hint: str = INSTALL_TRAIN):
    """Import an optional heavy module or raise MissingDependencyError naming the pip line that fixes it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError(
            f"{module} is not installed ({exc}); install the extra that has it: {extra_hint}"
        ) from None


class ClusterError(FmnistEdgeError):
    """A Ray cluster that cannot be reached or joined, or a study or archive run that failed on it."""
