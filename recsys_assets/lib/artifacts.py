"""Model artifacts: a payload file plus a JSON meta file that carries the payload's sha256.

The payload is written first, then the meta, each atomically; a reader that finds
a meta whose sha256 does not match the payload knows a write was interrupted and
says so, instead of loading half of two versions.

Every artifact written inside ``with recorded_provenance(...)`` carries that provenance
(the snapshot, protocol, stage, the data cutoff and the newest event it was fitted on)
under the ``provenance`` key of its meta, so the leakage audit can read what each model
was built from instead of trusting the code that built it.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

from upath import UPath

from recsys_assets.lib.errors import RecsysError
from recsys_assets.lib.lake import write_bytes_atomic

SHA_KEY = "payload_sha256"
PROVENANCE_KEY = "provenance"

_PROVENANCE: ContextVar[dict[str, Any] | None] = ContextVar("artifact_provenance", default=None)


@contextmanager
def recorded_provenance(provenance: dict[str, Any]) -> Iterator[None]:
    """Artifacts written inside the block record ``provenance`` in their meta."""
    token = _PROVENANCE.set(dict(provenance))
    try:
        yield
    finally:
        _PROVENANCE.reset(token)


def current_provenance() -> dict[str, Any] | None:
    """The provenance artifacts written now would record (None outside ``recorded_provenance``)."""
    value = _PROVENANCE.get()
    return dict(value) if value is not None else None


def write_artifact(directory: UPath, payload_name: str, payload: bytes, meta_name: str, meta: dict[str, Any]) -> None:
    """``directory/payload_name`` then ``directory/meta_name`` (meta + the payload's sha256)."""
    directory = UPath(directory)
    write_bytes_atomic(directory / payload_name, payload)
    full = {**meta, SHA_KEY: hashlib.sha256(payload).hexdigest()}
    if (provenance := current_provenance()) is not None:
        full[PROVENANCE_KEY] = provenance
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
