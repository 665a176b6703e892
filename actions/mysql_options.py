"""Read a MySQL/MariaDB option file (the policy's `secrets` entry) for PyMySQL.

The same file is handed to `mariadb`/`mariadb-dump` as `--defaults-extra-file`, so
one secret serves both the client binaries and our PyMySQL connections:

    [client]
    user = failover
    password = "s3cret"
    host = 127.0.0.1          # or socket = /run/mysqld/mysqld.sock
    port = 3306
    ssl-ca = /etc/gocdb/ca.pem

Groups read, later ones winning as the MariaDB clients do: `[client]`,
`[client-server]`, `[client-mariadb]`. The password is kept out of `repr()` and of
every message, and the file is refused when its group or other bits are set (the
runner checks this too; checking again here costs nothing and keeps tests honest).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import StepError
from engine.secrets import require_secret_file

GROUPS = ("client", "client-server", "client-mariadb")


@dataclass
class ClientOptions:
    """Connection parameters from an option file; `password` never shows in repr()."""

    path: Path
    host: str | None = None
    port: int = 3306
    socket: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: dict[str, Any] | None = None

    def where(self) -> str:
        """Where the server is, for messages: a socket path or host:port (never the password)."""
        if self.socket and self.host in (None, "localhost"):
            return f"socket {self.socket}"
        return f"{self.host or 'localhost'}:{self.port}"

    def connect_args(self) -> dict[str, Any]:
        """Keyword arguments for `pymysql.connect` (without a database)."""
        args: dict[str, Any] = {"user": self.user or "", "password": self.password or ""}
        # PyMySQL only uses the socket when asked to; the client binaries use it for
        # host=localhost (or no host), so do the same to reach the same server.
        if self.socket and self.host in (None, "localhost"):
            args["unix_socket"] = self.socket
        else:
            args["host"] = self.host or "localhost"
            args["port"] = self.port
        if self.ssl:
            args["ssl"] = self.ssl
        return args


def check_mode(path: Path) -> None:
    """Refuse an option file that group or others may read or write (0640 and 0604 alike)."""
    require_secret_file(path, "MariaDB option file:")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    # An unquoted value ends at an inline comment, as in the client's own parser.
    for marker in (" #", "\t#"):
        if marker in value:
            value = value.split(marker, 1)[0].rstrip()
    return value


def parse(text: str) -> dict[str, str]:
    """The merged `[client]`-family settings of an option file (keys with `_` as `-`)."""
    settings: dict[str, str] = {}
    group: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip().lower()
            continue
        if group not in GROUPS:
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower().replace("_", "-")
        settings[key] = _unquote(value) if sep else ""
    return settings


def read_options(path: str | Path) -> ClientOptions:
    """Check the file's mode, then read its client settings; StepError on any problem."""
    path = Path(path)
    check_mode(path)
    from engine.safefile import FileRefused, read_limited

    try:  # a regular file of at most 64 KiB (engine/safefile.py)
        text = read_limited(path, "option_file").decode("utf-8")
    except FileRefused as exc:
        raise StepError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise StepError(f"option file {path}: cannot read it ({exc})") from None
    settings = parse(text)
    try:
        port = int(settings.get("port", "3306"))
    except ValueError:
        raise StepError(f"option file {path}: port must be a number") from None
    ssl: dict[str, Any] = {}
    for key, name in (("ssl-ca", "ca"), ("ssl-cert", "cert"), ("ssl-key", "key")):
        if settings.get(key):
            ssl[name] = settings[key]
    wants_tls = "ssl" in settings and settings["ssl"].lower() not in ("0", "off", "false")
    if ssl or wants_tls:
        # Verify the server's name only when the file asks for it, as the clients do.
        ssl["check_hostname"] = "ssl-verify-server-cert" in settings
    return ClientOptions(
        path=path,
        host=settings.get("host") or None,
        port=port,
        socket=settings.get("socket") or None,
        user=settings.get("user") or None,
        password=settings.get("password"),
        ssl=ssl or None,
    )


def connect(options: ClientOptions, database: str | None = None, **extra: Any) -> Any:
    """A PyMySQL connection; connection failures become a retryable StepError."""
    import pymysql  # imported here so commands that never touch MariaDB do not load it

    args = options.connect_args()
    args.update(charset="utf8mb4", autocommit=True, connect_timeout=10)
    args.update(extra)
    if database:
        args["database"] = database
    try:
        return pymysql.connect(**args)
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else 0
        # 1045 access denied / 1049 unknown database will not fix themselves.
        retryable = code not in (1044, 1045, 1049)
        raise StepError(
            f"MariaDB at {options.where()} (options {options.path}): cannot connect:"
            f" {exc.args[-1] if exc.args else exc}",
            retryable=retryable,
        ) from None


def env_without_secrets() -> dict[str, str]:
    """The environment for client binaries: no MYSQL_PWD, and UTC so dump dates are UTC."""
    env = {k: v for k, v in os.environ.items() if k not in ("MYSQL_PWD",)}
    env["TZ"] = "UTC"
    return env
