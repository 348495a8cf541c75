"""Model repositories in the layout OpenVINO Model Server, Triton and KServe load: <root>/fmnist/<version>/model.xml|bin.

Each version folder also holds its own manifest.json (the IR's sizes and sha256 hashes, the class names, the
check figures `convert` measured), so a copied folder verifies on its own: `Classifier.load(version_folder)`
and `fmnist-edge serve --repository ROOT` read it. `convert` writes version 1 into the artifact folder's
`serving/`; `publish` adds the next version to any repository, atomically, with its golden set (golden.json; convert's
version 1 has none and serves ungated).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .. import faults
from ..artifact import PRECISION_TABLE, SERVING_CONFIG, ir_pair, read_manifest, write_version_manifest
from ..atomic import owner_tag, sweep
from ..contract import FIRST_VERSION as VERSION
from ..contract import IR_PRECISIONS as PUBLISHABLE
from ..contract import MODEL_NAME
from ..errors import ArtifactError, ConfigError

STAGE_PREFIX = ".publish-"  # a version being copied; servers only look at numbered folders


def write_serving(root: Path, ir_files: list[Path]) -> list[Path]:
    """Copy the fp32 IR into root/fmnist/1/ and write root/config.json (base_path relative to it; fp32's compute type)."""
    version_dir = root / MODEL_NAME / VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    copies = [Path(shutil.copyfile(f, version_dir / f.name)) for f in ir_files]
    hint = PRECISION_TABLE["fp32"].compute
    config = {
        "model_config_list": [
            {"config": {"name": MODEL_NAME, "base_path": MODEL_NAME, "plugin_config": {"INFERENCE_PRECISION_HINT": hint}}}
        ]
    }
    (root / SERVING_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return [*copies, root / SERVING_CONFIG]


def publish(artifacts: str | os.PathLike, repository: str | os.PathLike, precision: str = "fp32",
            sign: str | os.PathLike | None = None) -> Path | str:
    """Add the verified `precision` IR of an artifact folder to `repository` as its next version; returns the
    new version folder. The folder is filled under a hidden name and renamed into place, so a server that
    watches the repository never sees half of it. The version holds its golden set (golden.json: the real
    test images of `golden.py` and this IR's answers), listed in its manifest.json. `sign`: a private key
    (`fmnist-edge keygen`) that signs every file of the version (model.sig) before the rename, so a version
    appears signed or not at all. A `repository` URI (s3://, gs://, file://): the version is staged as above in a local
    temporary repository, then uploaded (store.upload: a hidden prefix, its READY marker last); returns its URI."""
    from ..artifact import locate
    from ..store import check_writable, is_remote, upload

    if is_remote(repository):
        check_writable(str(repository))  # before anything is staged (https:// is read-only)
        with tempfile.TemporaryDirectory(prefix="fmnist-publish-") as local:
            return upload(publish(artifacts, local, precision, sign=sign), str(repository))

    if sign is not None:
        from ..signing import check_private_key

        check_private_key(sign)  # a bad key is refused before anything is copied
    if precision not in PUBLISHABLE:
        raise ConfigError(f"cannot publish precision {precision!r}; choose one of {', '.join(PUBLISHABLE)} "
                          "(bf16 is the fp32 IR: publish fp32 and serve it with --precision bf16)")
    files = locate(artifacts, precision)  # verifies the hashes before anything is copied
    manifest = read_manifest(artifacts).raw
    base = Path(repository) / MODEL_NAME
    try:
        base.mkdir(parents=True, exist_ok=True)
        sweep(base, (STAGE_PREFIX,))  # what a killed publish left
        stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{owner_tag()}-", dir=base))
    except OSError as exc:
        raise ArtifactError(f"cannot write in {base}: {exc.strerror or exc}; choose a writable repository") from None
    try:
        for src, dst in zip((files.xml, files.xml.with_suffix(".bin")), ir_pair(stage), strict=True):
            shutil.copyfile(src, dst)
        from ..golden import write as write_golden
        from ..runtime import Classifier

        # the golden set's answers: the same IR, verified in the artifact folder; recorded in the manifest
        golden = write_golden(stage, Classifier.load(artifacts, precision=precision))
        write_version_manifest(stage, {**manifest, "golden": golden}, precision)
        if sign is not None:
            from ..signing import sign as sign_folder

            sign_folder(stage, sign)
        for path in stage.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(stage, 0o755)
        faults.point("publish-staged")
        while True:  # the next free number; a concurrent publisher that takes it first makes us try the next
            version = base / str(max((int(p.name) for p in base.iterdir() if p.name.isdigit()), default=0) + 1)
            try:
                os.rename(stage, version)  # atomic; fails if the name exists (non-empty) or races
                return version
            except OSError:
                if not version.exists():
                    raise
    except OSError as exc:
        raise ArtifactError(f"cannot publish into {base}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def serve_command(root: Path) -> str:
    """The one command that serves the layout over REST (port 8000) and gRPC (9000)."""
    return (f"docker run --rm -p 8000:8000 -p 9000:9000 -v {root.resolve()}:/models:ro openvino/model_server:latest "
            "--config_path /models/config.json --rest_port 8000 --port 9000")
