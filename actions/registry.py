"""The one registry of step kinds and probe kinds: name → "module:Class".

Modules are imported only when a step of that kind is built, so commands that do
not use paramiko, PyMySQL, oracledb or dnspython never import them.

These tables are the list of kinds: engine/schemacheck.py allows exactly these in a
policy, each checked by its fragment `schemas/steps/<kind>.json` (`schemas/probes/`).
A new kind is its module, its line here, its fragment and its test (HACKING.md).
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

STEP_KINDS: dict[str, str] = {
    "notify": "actions.notify:Notify",
    "check_dump_age": "actions.check_dump_age:CheckDumpAge",
    "disable_cron": "actions.cron:DisableCron",
    "enable_cron": "actions.cron:EnableCron",
    "lock": "actions.lock:Lock",
    "symlink": "actions.symlink:Symlink",
    "command": "actions.command:Command",
    "nsupdate": "actions.nsupdate:NsUpdate",
    "wait_dns": "actions.wait_dns:WaitDns",
    "dump_mariadb": "actions.dump_mariadb:DumpMariadb",
    "fetch": "actions.fetch:Fetch",
    "unzip": "actions.unzip:Unzip",
    "import_mariadb": "actions.import_mariadb:ImportMariadb",
    "import_oracle": "actions.import_oracle:ImportOracle",
    "archive": "actions.archive:Archive",
    "probe": "actions.probe_step:ProbeStep",
}

PROBE_KINDS: dict[str, str] = {
    "http": "actions.probes:HttpProbe",
    "tcp": "actions.probes:TcpProbe",
}


def _load(table: Mapping[str, str], kind: str) -> type:
    try:
        target = table[kind]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r} (known: {', '.join(sorted(table))})") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def step_class(kind: str) -> type:
    """The action class for a step kind."""
    return _load(STEP_KINDS, kind)


def build_step(kind: str, params: Mapping[str, Any]) -> Any:
    """An action instance for one step of the policy."""
    return step_class(kind)(params)


def probe_class(kind: str) -> type:
    """The probe class for a probe kind."""
    return _load(PROBE_KINDS, kind)
