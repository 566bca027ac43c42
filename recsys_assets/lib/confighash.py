"""A stable short hash of a config object, recorded on every artifact it produced."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def config_hash(*objs: Any) -> str:
    """12 hex chars of sha256 over the JSON of the (dataclass) configs."""
    text = json.dumps([_plain(o) for o in objs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
