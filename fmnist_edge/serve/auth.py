"""Who may use a server's control endpoints (the repository extension and /metrics): the bearer of the admin token.

`serve --admin-token-file FILE` reads the token once at start. The file must exist, hold one token of at least
MIN_LENGTH printable characters (no spaces), and be unreadable by other users (mode 0600 or 0640: a token any
local user can read is no secret). Without the option the control endpoints are off. A request proves itself with
`Authorization: Bearer TOKEN` (REST) or the `authorization` metadata of the same form (gRPC), compared in
constant time. Inference and health never need it.
"""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

from ..errors import ConfigError

MIN_LENGTH = 16
OFF = ("the repository endpoints and /metrics are off: start `fmnist-edge serve` with --admin-token-file FILE "
       "(a file of mode 0600 holding a bearer token) to turn them on")
NEEDED = "this endpoint needs the admin token: send the header `Authorization: Bearer TOKEN` (gRPC: `authorization` metadata)"


def read_token(path: str) -> str:
    """The token in the file at `path`; ConfigError (one line) if it is missing, empty, too short or readable by
    every user."""
    option = f"--admin-token-file {path}"
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{option}: not a text file; write the token in it (e.g. `openssl rand -hex 32 > FILE`)") from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise ConfigError(f"{option}: every user of this machine can {'read' if mode & stat.S_IROTH else 'change'} "
                          f"it (mode {stat.S_IMODE(mode):04o}); `chmod 600 {path}`")
    token = text.strip()
    if not token:
        raise ConfigError(f"{option}: it is empty; write a token in it (e.g. `openssl rand -hex 32 > FILE`)")
    if len(token) < MIN_LENGTH or not token.isprintable() or any(c.isspace() for c in token) or not token.isascii():
        raise ConfigError(f"{option}: the token must be one word of at least {MIN_LENGTH} printable ASCII characters "
                          "(e.g. `openssl rand -hex 32 > FILE`)")
    return token


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header (or metadata) value `header` is `Bearer <token>`, compared in constant time."""
    scheme, _, given = (header or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
