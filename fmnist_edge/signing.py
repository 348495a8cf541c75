"""Signed model versions: EC P-256 keys, and the OpenSSF `model-signing` signature over every file of a folder.

`publish --sign KEY` writes SIGNATURE (a Sigstore bundle made with the library's private-key method, offline)
into a version folder before the folder is renamed into place; `verify`, `Classifier.load(trust=...)` and
`serve --trust` check it against trusted public keys. A key is named by its fingerprint: the sha256 of its PEM
public key, the hint `model-signing` records in the bundle. model-signing and cryptography come with the
[kiosk] extra and are imported only here, only when a key is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .contract import INSTALL_KIOSK, MODEL_NAME
from .errors import ArtifactError, ConfigError, SignatureError, first_line, require

SIGNATURE = "model.sig"  # in the version folder, beside model.xml, model.bin and manifest.json
PUBLIC_SUFFIX = ".pub"
SHORT = 16  # hex digits of a fingerprint shown to people


@dataclass(frozen=True)
class TrustedKey:
    """A public key a kiosk accepts signatures from: its PEM, its fingerprint and where it came from."""

    pem: bytes
    fingerprint: str
    source: str

    @property
    def short(self) -> str:
        return self.fingerprint[:SHORT]


def _crypto():
    require("model_signing", INSTALL_KIOSK)  # brings cryptography
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return serialization, ec


def _public_pem(public_key) -> bytes:
    serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(pem: bytes) -> str:
    """The sha256 of a PEM public key, as model-signing records it in a bundle (hex)."""
    return hashlib.sha256(pem).hexdigest()


def keygen(prefix: str | os.PathLike) -> tuple[Path, Path]:
    """Write an EC P-256 private key to PREFIX (PEM, mode 0600) and its public key to PREFIX.pub; refuses to
    overwrite either. Returns (private, public)."""
    from .atomic import write_bytes

    serialization, ec = _crypto()
    private, public = Path(prefix), Path(f"{prefix}{PUBLIC_SUFFIX}")
    for path in (private, public):
        if path.exists():
            raise ArtifactError(f"{path} exists; keygen never overwrites a key: choose another prefix or remove it")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        private.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not for a moment
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
    except FileExistsError:
        raise ArtifactError(f"{private} exists; keygen never overwrites a key: choose another prefix or remove it") from None
    except OSError as exc:
        raise ArtifactError(f"cannot write {private}: {exc.strerror or exc}") from None
    write_bytes(public, _public_pem(key.public_key()))
    return private, public


def check_private_key(path: str | os.PathLike) -> None:
    """A signing key that cannot be read, or is not an EC key, is one ConfigError before anything is written."""
    serialization, ec = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the signing key {path}: {first_line(exc)} "
                          "(`fmnist-edge keygen PREFIX` makes one; an encrypted key is not supported)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"the signing key {path} is not an elliptic-curve key; `fmnist-edge keygen PREFIX` makes one")


def _hashing():
    from model_signing import hashing

    return hashing.Config().use_file_serialization(hashing_algorithm="sha256").set_ignored_paths(paths=[SIGNATURE])


def sign(folder: str | os.PathLike, private_key: str | os.PathLike) -> Path:
    """Sign every file of `folder` (but the signature itself) with `private_key`; writes folder/SIGNATURE."""
    require("model_signing", INSTALL_KIOSK)
    from model_signing import signing

    check_private_key(private_key)
    folder = Path(folder)
    out = folder / SIGNATURE
    try:
        signing.Config().use_elliptic_key_signer(private_key=private_key).set_hashing_config(_hashing()).sign(folder, out)
        with open(out, "rb") as f:
            os.fsync(f.fileno())
    except OSError as exc:
        raise ArtifactError(f"cannot sign {folder}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"cannot sign {folder} with {private_key}: {first_line(exc)}") from None
    return out


def trusted_keys(trust: Iterable[str | os.PathLike | bytes]) -> list[TrustedKey]:
    """Public keys from paths or PEM bytes; a missing, unreadable or non-EC key is a ConfigError."""
    serialization, ec = _crypto()
    keys = []
    for item in trust:
        source = "PEM bytes" if isinstance(item, bytes) else str(item)
        try:
            data = item if isinstance(item, bytes) else Path(item).read_bytes()
            key = serialization.load_pem_public_key(data)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read the trusted key {source}: {first_line(exc)} "
                              f"(give the {PUBLIC_SUFFIX} file that `fmnist-edge keygen` wrote)") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError(f"the trusted key {source} is not an elliptic-curve public key")
        pem = _public_pem(key)
        keys.append(TrustedKey(pem, fingerprint(pem), source))
    return keys


def signed_folder(path: str | os.PathLike) -> Path:
    """The folder whose signature `verify PATH` checks: PATH itself when it is a version (or holds a signature),
    else the newest version of the repository PATH, PATH/fmnist or PATH/serving (an artifact folder)."""
    path = Path(path)
    if (path / SIGNATURE).exists() or (path / "model.xml").exists():
        return path
    for base in (path, path / MODEL_NAME, path / "serving" / MODEL_NAME):
        versions = [p for p in base.iterdir() if p.name.isdigit() and p.is_dir()] if base.is_dir() else []
        if versions and base.name == MODEL_NAME:
            return max(versions, key=lambda p: int(p.name))
    return path


def _differences(folder: Path, bundle: dict) -> str:
    """What differs between `folder` and the file list a (verified) bundle signs: changed, unsigned and missing
    files, read from the signed payload (model-signing's own message prints digests as Python bytes)."""
    import base64

    from .artifact import sha256

    try:
        payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        signed = {r["name"]: r["digest"] for r in payload["predicate"]["resources"]}
    except (KeyError, TypeError, ValueError) as exc:
        return f"the files differ from what was signed ({first_line(exc)})"
    present = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
               if p.is_file() and p.name != SIGNATURE}
    changed = [n for n in sorted(signed) if n in present and sha256(present[n]) != signed[n]]
    extra = [n for n in present if n not in signed]
    missing = [n for n in sorted(signed) if n not in present]
    parts = [f"{what}: {', '.join(names)}" for what, names in
             (("changed since signing", changed), ("not signed", extra), ("signed but missing", missing)) if names]
    return "; ".join(parts) or "the files differ from what was signed"


def verify(folder: str | os.PathLike, trust: Iterable[str | os.PathLike | bytes] | list[TrustedKey]) -> TrustedKey:
    """Check `folder`'s signature against the trusted keys; returns the key that made it. SignatureError, naming
    the folder and the reason, when the signature is missing, unreadable, made by another key, invalid, or a
    file differs from what was signed."""
    items = list(trust)
    keys = items if all(isinstance(k, TrustedKey) for k in items) else trusted_keys(items)
    if not keys:
        raise ConfigError("no trusted key given; pass at least one public key (--trust PUBKEY)")
    folder = Path(folder)
    sig = folder / SIGNATURE
    if not sig.is_file():
        raise SignatureError(f"{folder}: signature missing (no {SIGNATURE}; `fmnist-edge publish --sign KEY` signs a version)")
    try:
        bundle = json.loads(sig.read_text(encoding="utf-8"))
        hint = ((bundle.get("verificationMaterial") or {}).get("publicKey") or {}).get("hint")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise SignatureError(f"{folder}: signature invalid ({SIGNATURE} cannot be read: {first_line(exc)})") from None
    matching = [k for k in keys if k.fingerprint == hint] if hint else keys
    if not matching:
        raise SignatureError(f"{folder}: signed by another key ({str(hint)[:SHORT]}), not by a trusted one "
                             f"({', '.join(k.short for k in keys)})")
    require("model_signing", INSTALL_KIOSK)
    from cryptography.exceptions import InvalidSignature
    from model_signing import verifying

    last = ""
    with tempfile.TemporaryDirectory(prefix="fmnist-trust-") as tmp:
        for key in matching:
            pub = Path(tmp, f"{key.short}.pub")
            pub.write_bytes(key.pem)
            try:
                verifying.Config().use_elliptic_key_verifier(public_key=pub).set_hashing_config(_hashing()).verify(folder, sig)
                return key
            except InvalidSignature:
                last = f"signature invalid (not made by key {key.short} over what it says)"
            except ValueError as exc:
                if str(exc).startswith("Signature mismatch"):  # the signature holds; the files do not
                    raise SignatureError(f"{folder}: {_differences(folder, bundle)}; re-publish it with --sign") from None
                last = f"signature invalid ({first_line(exc)})"
            except (KeyError, TypeError, AttributeError, OSError) as exc:  # a malformed bundle
                last = f"signature invalid ({type(exc).__name__}: {first_line(exc)})"
    raise SignatureError(f"{folder}: {last}")
