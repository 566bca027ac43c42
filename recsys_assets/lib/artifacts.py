"""Model artifacts: a payload file plus a JSON meta file that carries the payload's sha256.

The payload is written first, then the meta, each atomically; a reader that finds
a meta whose sha256 does not match the payload knows a write was interrupted and
says so, instead of loading half of two versions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from upath import UPath

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.lake import write_bytes_atomic

SHA_KEY = "payload_sha256"


def write_artifact(directory: UPath, payload_name: str, payload: bytes, meta_name: str, meta: dict[str, Any]) -> None:
    """``directory/payload_name`` then ``directory/meta_name`` (meta + the payload's sha256)."""
    directory = UPath(directory)
    write_bytes_atomic(directory / payload_name, payload)
    full = {**meta, SHA_KEY: hashlib.sha256(payload).hexdigest()}
    write_bytes_atomic(directory / meta_name, json.dumps(full, indent=2, sort_keys=True, default=str).encode())


def read_artifact(
    directory: UPath, payload_name: str, meta_name: str, error: type[RecsysError], what: str, remedy: str
) -> tuple[bytes, dict[str, Any]]:
    """(payload bytes, meta) of an artifact written by :func:`write_artifact`; ``error`` when missing or torn."""
    directory = UPath(directory)
    ppath, mpath = directory / payload_name, directory / meta_name
    if not ppath.exists() or not mpath.exists():
        raise error(f"No {what} at {directory}: expected {payload_name} and {meta_name}; {remedy}.")
    meta = json.loads(mpath.read_bytes())
    payload = ppath.read_bytes()
    if hashlib.sha256(payload).hexdigest() != meta.pop(SHA_KEY, None):
        raise error(f"{ppath} does not match {mpath} (sha256 differs): a write was interrupted; {remedy}.")
    return payload, meta
