"""Where the schema and the shipped policies live: in a checkout, or installed by pip."""
from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
_INSTALLED = Path(sys.prefix) / "share" / "failover-engine"


def _first_existing(relative: str) -> Path:
    for base in (_CHECKOUT, _INSTALLED):
        candidate = base / relative
        if candidate.exists():
            return candidate
    return _CHECKOUT / relative


def schema_dir() -> Path:
    """The directory holding policy.schema.json and its per-kind fragments."""
    return _first_existing("schemas")


def policies_dir() -> Path:
    """The directory holding gocdb.yaml and examples/."""
    return _first_existing("policies")
