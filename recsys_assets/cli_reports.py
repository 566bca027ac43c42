"""``recsys-assets demo`` and ``recsys-assets report``."""

from __future__ import annotations


def add_commands(sub, add_lake) -> None:
    """Registered by the lift-report stage (see cmd_demo / cmd_report below)."""
