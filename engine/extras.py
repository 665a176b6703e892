"""Optional Python dependencies: which pip extra provides a module, and the line saying so.

Only a few steps need them (import_oracle needs oracledb), so a plain install, and the
Debian package, work without them; a policy that uses such a step gets one line naming
the extra instead of a traceback or a generic "run bin/bootstrap".
"""
from __future__ import annotations

# import name → (pip extra, who needs it, what Debian 12 offers instead)
EXTRAS: dict[str, tuple[str, str, str]] = {
    "oracledb": ("oracle", "the import_oracle step",
                 "Debian 12 has no python3-oracledb package"),
    "aiosmtpd": ("drill", "the drill's SMTP sink", "apt-get install python3-aiosmtpd"),
}


def is_optional(module: str) -> bool:
    """Whether `module` (an import name) belongs to an extra, not to the base install."""
    return module.split(".")[0] in EXTRAS


def install_hint(module: str) -> str | None:
    """'<who> needs <module>: pip install "failover-engine[<extra>]" (…)', or None when
    `module` is not an optional dependency."""
    found = EXTRAS.get(module.split(".")[0])
    if found is None:
        return None
    extra, who, debian = found
    return (f"{who} needs the Python package {module.split('.')[0]}: "
            f"pip install 'failover-engine[{extra}]' ({debian})")
