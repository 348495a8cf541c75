"""Verified model files: the IR of one precision, checked against the sizes and sha256 hashes in manifest.json."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import contract
from ..contract import IR_OF, PRECISIONS
from ..errors import ConfigError, IntegrityError, ManifestError, ModelFileError, PrecisionNotAvailableError

CONVERT_HINT = "run `fmnist-edge convert` on the trained model"


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
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if not folder.is_dir():
        what = "is a file, not an artifact folder" if folder.exists() else "does not exist"
        raise ModelFileError(f"model folder {folder} {what}; {CONVERT_HINT}, or pass the folder it wrote")
    sub = IR_OF[precision]
    if not verify:
        xml = folder / "openvino" / sub / "model.xml"
        if not xml.is_file() or not xml.with_suffix(".bin").is_file():
            raise PrecisionNotAvailableError(f"{folder} has no {sub} OpenVINO model (openvino/{sub}/model.xml|bin); {CONVERT_HINT}")
        return ModelFiles(xml, precision, _class_names(folder, None), verified=False)

    manifest = read_manifest(folder)
    entries = {e.get("precision"): e for e in manifest["artifacts"] if e.get("format") == "openvino"}
    entry = entries.get(precision)
    if entry is None and precision == "bf16":
        entry = entries.get("fp32")  # not converted with --precision bf16: the fp32 IR is all it needs
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
        raise ManifestError(f"{folder}/manifest.json lists no files for the {sub} OpenVINO model; {CONVERT_HINT}")
    paths = [verify_file(folder, f) for f in files]
    xml = next((p for p in paths if p.suffix == ".xml"), None)
    if xml is None or not xml.with_suffix(".bin").is_file():
        raise ManifestError(f"{folder}/manifest.json lists no model.xml with its .bin for {sub}; {CONVERT_HINT}")
    return ModelFiles(xml, precision, _class_names(folder, manifest), verified=True)


def usable_precisions(folder: str | Path) -> list[str]:
    """The OpenVINO precisions that `convert` wrote into `folder` and whose check passed (status "ok")."""
    manifest = read_manifest(Path(folder)) if Path(folder).is_dir() else locate(folder, "fp32")
    return [e.get("precision") for e in manifest["artifacts"]
            if e.get("format") == "openvino" and e.get("status") == "ok" and e.get("precision") in PRECISIONS]


def read_manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        raise ManifestError(
            f"{folder} has no manifest.json, so its model files cannot be verified; {CONVERT_HINT} "
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
    return manifest


def verify_file(folder: Path, entry: dict) -> Path:
    """Check one manifest file entry (path, bytes, sha256); return its path."""
    rel = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(rel, str) or not rel or PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
        raise ManifestError(f"{folder}/manifest.json has a bad file path {rel!r}; paths must be relative, inside the folder")
    path = folder / rel
    if not path.is_file():
        raise IntegrityError(f"{path} is missing but manifest.json lists it; the artifact folder is incomplete, {CONVERT_HINT}")
    size = path.stat().st_size
    if entry.get("bytes") is not None and size != entry["bytes"]:
        raise IntegrityError(
            f"{path} has {size} bytes, manifest.json records {entry['bytes']}: the file was changed or truncated; {CONVERT_HINT}"
        )
    digest = sha256(path)
    if digest != str(entry.get("sha256", "")).lower():
        raise IntegrityError(
            f"{path} has sha256 {digest[:16]}..., manifest.json records {str(entry.get('sha256'))[:16]}...: "
            f"the file was changed; {CONVERT_HINT}"
        )
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _class_names(folder: Path, manifest: dict | None) -> tuple[str, ...]:
    """From manifest.json, else the training metadata.json, else the data set's own names."""
    names = (manifest or {}).get("class_names")
    if not names:
        try:
            names = json.loads((folder / "metadata.json").read_text(encoding="utf-8")).get("class_names")
        except (OSError, ValueError, AttributeError):
            names = None
    names = tuple(str(n) for n in (names or contract.CLASS_NAMES))
    if len(names) != contract.NUM_CLASSES:
        raise ManifestError(f"{folder}: {len(names)} class names, the model has {contract.NUM_CLASSES} outputs")
    return names
