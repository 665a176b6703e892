"""What the Nagios plugins (`check engine`, `check readiness`) share: the codes, and one
answer for whatever keeps a check from judging — UNKNOWN with one line, never a traceback."""
from __future__ import annotations

from collections.abc import Callable

from engine.errors import FailoverError

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3

NRPE_HINT = "`failover-engine install --check-group GROUP` (docs/operations.md, NRPE)"


def answer(label: str, judge: Callable[[], tuple[int, str]],
           expected: tuple[type[Exception], ...] = (FailoverError,)) -> int:
    """Print the plugin line `judge()` gives and return its code; a file this user may not
    read, an `expected` error or a bug is `<label> UNKNOWN - <one line>` (plugin guidelines:
    a check that cannot know says so, it does not say CRITICAL)."""
    try:
        code, line = judge()
    except PermissionError as exc:
        print(f"{label} UNKNOWN - {exc.filename}: permission denied; let this user read it: "
              f"{NRPE_HINT}")
        return UNKNOWN
    except expected as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{label} UNKNOWN - {first}")
        return UNKNOWN
    except Exception as exc:  # noqa: BLE001 - a plugin must answer 0-3, never a traceback
        print(f"{label} UNKNOWN - internal error ({type(exc).__name__}: {exc})")
        return UNKNOWN
    print(line)
    return code
