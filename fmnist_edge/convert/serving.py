"""The model-repository layout OpenVINO Model Server loads as it is: serving/fmnist/1/model.xml|bin + config.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..contract import FIRST_VERSION as VERSION
from ..contract import MODEL_NAME


def write_serving(root: Path, ir_files: list[Path]) -> list[Path]:
    """Copy the IR into root/fmnist/1/ and write root/config.json (base_path relative to it; f32 compute)."""
    version_dir = root / MODEL_NAME / VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    copies = [Path(shutil.copyfile(f, version_dir / f.name)) for f in ir_files]
    config = {
        "model_config_list": [
            {"config": {"name": MODEL_NAME, "base_path": MODEL_NAME, "plugin_config": {"INFERENCE_PRECISION_HINT": "f32"}}}
        ]
    }
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return [*copies, root / "config.json"]


def serve_command(root: Path) -> str:
    """The one command that serves the layout over REST (port 8000) and gRPC (9000)."""
    return (f"docker run --rm -p 8000:8000 -p 9000:9000 -v {root.resolve()}:/models:ro openvino/model_server:latest "
            "--config_path /models/config.json --rest_port 8000 --port 9000")
