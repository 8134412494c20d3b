"""Finding a server and its token, the same way the `kaon` CLI does (core/src/cli/client.ts).

Address: argument, else `KAON_ADDRESS`, else `<data-dir>/server.json` (written by a running
`kaon server`), else 127.0.0.1:7070. Token: argument, else `KAON_TOKEN`, else
`<data-dir>/admin.token` — the last only for a local address (`is_local_address`): the admin
token of this machine's server never travels to a host an address names. The data dir is
`KAON_HOME`, else `~/.kaon`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_GRPC_ADDRESS = "127.0.0.1:7070"
SERVER_INFO_FILE = "server.json"
ADMIN_TOKEN_FILE = "admin.token"


@dataclass(frozen=True)
class Target:
    """Where to connect, why there, and how.

    Attributes:
        address: gRPC `host:port`.
        source: Where the address came from, named in connection errors.
        token: Bearer token, or None to send none.
        token_source: Where the token came from.
        tls_root_cert: PEM bytes to verify a TLS server with; None for plaintext.
    """

    address: str
    source: str
    token: str | None
    token_source: str
    tls_root_cert: bytes | None = None


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """`explicit`, else `KAON_HOME`, else `~/.kaon`."""
    chosen = str(explicit) if explicit else os.environ.get("KAON_HOME", "").strip()
    return Path(chosen).expanduser().resolve() if chosen else Path.home() / ".kaon"


def _read_server_info(directory: Path) -> dict[str, object] | None:
    try:
        value = json.loads((directory / SERVER_INFO_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(value, dict) and isinstance(value.get("grpc"), str):
        return value
    return None


def _read_file(path: str | Path) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


_LOOPBACK_V4 = re.compile(r"^127(\.\d{1,3}){3}$")


def is_local_address(address: str) -> bool:
    """True for this machine: a loopback or unspecified host, or a unix socket."""
    text = address.strip().lower()
    text = re.sub(r"^dns:(///)?", "", text)
    if text.startswith("unix:"):
        return True
    bracketed = re.match(r"^\[([^\]]+)\](?::\d+)?$", text)
    if bracketed:
        host = bracketed.group(1)
    elif "::" in text:
        host = text
    else:
        host = re.sub(r":\d+$", "", text)
    return host in ("localhost", "::1", "::", "0.0.0.0") or bool(_LOOPBACK_V4.match(host))


def resolve_target(
    address: str | None = None,
    token: str | None = None,
    data_dir_path: str | os.PathLike[str] | None = None,
) -> Target:
    """Works out where and how to connect (see the module docstring for the order)."""
    directory = data_dir(data_dir_path)
    tls_ca = os.environ.get("KAON_TLS_CA")
    tls_cert: bytes | None = _read_file(tls_ca) if tls_ca else None
    if address:
        addr, source = address, "the address argument"
    elif os.environ.get("KAON_ADDRESS"):
        addr, source = os.environ["KAON_ADDRESS"], "KAON_ADDRESS"
    else:
        info = _read_server_info(directory)
        if info is not None:
            addr, source = str(info["grpc"]), str(directory / SERVER_INFO_FILE)
            if info.get("tls") and tls_cert is None and isinstance(info.get("tlsCert"), str):
                tls_cert = _read_file(str(info["tlsCert"]))
        else:
            addr = DEFAULT_GRPC_ADDRESS
            source = (
                f"the default (no {directory / SERVER_INFO_FILE}: no server has run with that "
                "data directory)"
            )
    if token:
        tok: str | None = token
        token_source = "the token argument"
    elif os.environ.get("KAON_TOKEN"):
        tok, token_source = os.environ["KAON_TOKEN"], "KAON_TOKEN"
    elif not is_local_address(addr):
        tok = None
        token_source = (
            f"none ({addr} is not a local server, so the admin token in "
            f"{directory / ADMIN_TOKEN_FILE} is not sent to it; pass token= or set KAON_TOKEN)"
        )
    else:
        raw = _read_file(directory / ADMIN_TOKEN_FILE)
        tok = raw.decode("utf-8").strip() or None if raw is not None else None
        token_source = str(directory / ADMIN_TOKEN_FILE) if tok else "none"
    return Target(addr, source, tok, token_source, tls_cert)
