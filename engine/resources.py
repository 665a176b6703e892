"""Where the schema and the shipped policies live: in a checkout, or installed by pip.

`FAILOVER_ENGINE_SCHEMA_DIR`, when set, names the schema directory instead: a step kind
can then be tried (its fragment next to a copy of the shipped ones) before it is
installed, and the recipe test of HACKING.md adds a throwaway kind that way.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
_INSTALLED = Path(sys.prefix) / "share" / "failover-engine"
SCHEMA_DIR_ENV = "FAILOVER_ENGINE_SCHEMA_DIR"


def _first_existing(relative: str) -> Path:
    for base in (_CHECKOUT, _INSTALLED):
        candidate = base / relative
        if candidate.exists():
            return candidate
    return _CHECKOUT / relative


def default_schema_dir() -> Path:
    """The shipped schema directory (checkout or installed), ignoring the environment."""
    return _first_existing("schemas")


def schema_dir() -> Path:
    """The directory holding policy.schema.json and its per-kind fragments."""
    override = os.environ.get(SCHEMA_DIR_ENV)
    if override:
        return Path(override).expanduser().absolute()
    return default_schema_dir()


def policies_dir() -> Path:
    """The directory holding gocdb.yaml and examples/."""
    return _first_existing("policies")
