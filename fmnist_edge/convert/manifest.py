"""manifest.json, the record of every artifact: files with sha256, check figures, tool versions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from .. import contract
from ..runtime.manifest import sha256
from ..versions import versions

FILENAME = "manifest.json"


def file_entry(root: Path, path: Path) -> dict:
    """{"path": relative to root with '/', "bytes", "sha256"}."""
    return {"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": sha256(path)}


def artifact(fmt: str, precision: str, files: list[dict], inference_precision: str | None = None,
             check: dict | None = None, status: str = "ok", reason: str | None = None) -> dict:
    return {"format": fmt, "precision": precision, "files": files, "inference_precision": inference_precision,
            "check": check, "status": status, "reason": reason}


def build(source_path: Path, kind: str, artifacts: list[dict]) -> dict:
    return {
        "schema_version": contract.MANIFEST_SCHEMA,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"path": str(source_path), "kind": kind},
        "class_names": list(contract.CLASS_NAMES),
        **contract.tensor_specs(),
        "versions": versions(),
        "artifacts": artifacts,
    }


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def table(manifest: dict) -> str:
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
