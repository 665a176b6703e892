"""`fetch`: copy a file (a database dump) from another host over SFTP, or from a local path.

The dump holds personal data, so it is written with mode 0600, under a temporary name in
the destination directory, and renamed to its final name only once its size (and, when
asked, its SHA-256) has been checked. An interrupted transfer never leaves a file under
the final name; stale temporary files of an earlier crash are removed at the next run.

Remote sources are `user@host:/path`. Only key authentication is used: the private key
named by `identity` (mode 0600 or 0400, owned by the engine's user); no password, no
agent, no keys picked up from ~/.ssh. The server's host key must be listed in the
`known_hosts` file given; an unknown or a changed host key is refused, with the
fingerprint the server offered. Anything else is a local path, copied.

Idempotent: when the destination already has the file with the remote's size and
modification time (or, with `sha256: true`, the size and digest the sidecar names),
the step reports "already fetched" and transfers nothing.

Policy snippet (a job step)::

    jobs:
      import:
        steps:
          - fetch:
              source: "dumper@db.example.org:/var/backups/gocdb.sql.zip"
              known_hosts: /etc/failover-engine/known_hosts   # ssh-keyscan output, checked by hand
              identity: /etc/failover-engine/id_ed25519       # mode 0600
              port: 22                 # optional
              sha256: true             # optional: also check /var/backups/gocdb.sql.zip.sha256
              dest_dir: /var/lib/failover-engine/work   # optional: defaults to the job's work dir
              timeout: 30m

Output: `<dest_dir>/<basename of source>` (a Path), which the next step gets as its
`ctx.previous_output`; `plan()` names the same path. `dest_dir` defaults to the job's
work dir (`ctx.work_dir`, set by the runner for job steps).
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, ClassVar

import paramiko

from actions.base import Context, Outcome, Plan, Readiness
from engine.errors import StepError
from engine.fsutil import ensure_private_dir, fsync_dir, private_temp
from engine.safefile import FileRefused, read_limited
from engine.secrets import require_secret_file

_REMOTE = re.compile(r"^(?P<user>[^@/\s]+)@(?P<host>[^/:\s]+):(?P<path>.+)\Z")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}\Z")
_CHUNK = 1024 * 1024
# Connecting must fail fast even under a long step timeout: the runner retries.
_CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Remote:
    user: str
    host: str
    path: str


@dataclass(frozen=True)
class SourceInfo:
    """What the step learnt about the source: size, mtime (seconds) and the sidecar digest."""

    size: int
    mtime: float
    sha256: str | None


def parse_source(source: str) -> Remote | None:
    """`user@host:/path` → Remote; anything else is a local path (None)."""
    match = _REMOTE.match(source)
    if not match:
        return None
    return Remote(match["user"], match["host"], match["path"])


def check_private_key_file(path: Path, what: str = "identity") -> None:
    """Refuse a private key that is missing, not ours, or readable by group or others."""
    require_secret_file(path, f"fetch: {what}:")


def read_sidecar(text: str, where: str) -> str:
    """The digest of a `sha256sum` line (`<hex>  <name>`) or a bare hex digest."""
    token = text.strip().split(maxsplit=1)[0] if text.strip() else ""
    if not _SHA256.match(token):
        raise StepError(f"fetch: {where} does not start with a SHA-256 hex digest")
    return token.lower()


def load_known_hosts(path: Path, keys: paramiko.HostKeys) -> paramiko.HostKeys:
    """Add the host keys of the OpenSSH known_hosts file at `path` to `keys`.

    The file is read here, not by paramiko's `load`: only a regular file of at most 4 MiB
    (engine/safefile.py), so `known_hosts: /dev/zero` or a FIFO is one clear error instead
    of a process that grows until the kernel kills it, or that blocks forever.
    """
    try:
        text = read_limited(path, "known_hosts").decode("utf-8", errors="replace")
    except FileRefused as exc:
        raise StepError(f"fetch: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except (paramiko.SSHException, ValueError, binascii.Error):
            continue  # as ssh and paramiko's own loader do: a line they cannot parse is skipped
        if entry is not None and entry.key is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
    return keys


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_parts(directory: Path, name: str) -> None:
    """Delete temporaries an interrupted earlier run of this step left (our own naming only)."""
    for leftover in directory.glob(f".{glob_escape(name)}.*.part"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


class _HashingWriter:
    """A file-like sink for SFTPClient.getfo that hashes while writing (no second read)."""

    def __init__(self, out: BinaryIO, check: Callable[[], None]) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.written = 0
        self.check = check

    def write(self, data: bytes) -> int:
        self.check()
        self.digest.update(data)
        self.written += len(data)
        return self.out.write(data)


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"{hostname} not in known_hosts")
        self.hostname = hostname
        self.key = key


class _RefuseUnknownHost(paramiko.RejectPolicy):
    """RejectPolicy that keeps the offered key, so the refusal can show its fingerprint."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _UnknownHostKey(hostname, key)


# Words in a fetch error → the readiness reason code (a bounded set for the metrics label).
_READINESS_REASONS = (
    ("has CHANGED", "host_key_changed"), ("is not in", "host_key_unknown"),
    ("refused key", "key_refused"), ("does not exist", "no_dump"),
    ("permission denied", "no_dump"),
)


class Fetch:
    kind: ClassVar[str] = "fetch"

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.source = str(params["source"])
        self.remote = parse_source(self.source)
        self.dest_dir = params.get("dest_dir")
        self.known_hosts = Path(params["known_hosts"]) if params.get("known_hosts") else None
        self.identity = Path(params["identity"]) if params.get("identity") else None
        self.port = int(params.get("port", 22))
        self.sha256 = bool(params.get("sha256", False))
        path = self.remote.path if self.remote else self.source
        self.name = PurePosixPath(path).name

    # -- the step contract ------------------------------------------------------------

    def plan(self, ctx: Context) -> Plan:
        summary = f"fetch {self.source}"
        try:
            dest = self._dest(ctx)
        except StepError as exc:
            return Plan(summary=summary, problem=str(exc))
        try:
            info = self._inspect(ctx)
        except StepError as exc:
            # The destination is known: the next steps still plan against it.
            return Plan(summary=summary, problem=str(exc), output=dest)
        before = _describe(dest)
        if self._already_there(dest, info):
            return Plan(f"already fetched: {dest}", before=before, after=str(dest), done=True,
                        output=dest)
        return Plan(
            summary=f"{summary} ({info.size} bytes) → {dest}", before=before, after=str(dest),
            output=dest,
        )

    def apply(self, ctx: Context) -> Outcome:
        dest = self._dest(ctx)
        ensure_private_dir(dest.parent)
        remove_stale_parts(dest.parent, dest.name)
        before = _describe(dest)
        if self.remote is None:
            info = self._local_info()
            if self._already_there(dest, info):
                return Outcome(f"already fetched: {dest}", before, str(dest), changed=False,
                               output=dest)
            self._copy_local(ctx, Path(self.source), info, dest)
        else:
            with self._sftp(ctx) as sftp:
                info = self._remote_info(sftp)
                if self._already_there(dest, info):
                    return Outcome(f"already fetched: {dest}", before, str(dest),
                                   changed=False, output=dest)
                self._download(ctx, sftp, info, dest)
        ctx.log(f"fetched {self.source} → {dest} ({info.size} bytes)")
        return Outcome(f"fetched {self.source} → {dest} ({info.size} bytes)", before, str(dest),
                       output=dest)

    def host_problems(self, ctx: Context) -> list[str]:
        """For `validate --host`: the key and known_hosts files this step will need."""
        if self.remote is None:
            return []
        if self.known_hosts is None or self.identity is None:
            return [f"fetch: {self.source} is remote; set known_hosts and identity"]
        problems = []
        try:
            check_private_key_file(self.identity)
            _load_key(self.identity)
        except StepError as exc:
            problems.append(str(exc))
        try:
            load_known_hosts(self.known_hosts, paramiko.HostKeys())
        except StepError as exc:
            problems.append(str(exc))
        return problems

    def readiness(self, ctx: Context) -> Readiness:
        """Read-only proof that the next fetch can work (engine/readiness.py): the SFTP
        source answers, its host key matches known_hosts, our key is accepted and the dump
        is there (a local source: the file is there). Fact `source_bytes`: its size."""
        local = self.host_problems(ctx)  # our key and known_hosts files, before connecting
        if local:
            return Readiness(False, "; ".join(local), "key_file")
        try:
            info = self._inspect(ctx)
        except StepError as exc:
            text = str(exc)
            reason = next((code for marker, code in _READINESS_REASONS if marker in text),
                          "unreachable" if exc.retryable else "error")
            return Readiness(False, text, reason)
        how = (f" over SFTP (host key matches {self.known_hosts}, key {self.identity} "
               "accepted)" if self.remote is not None else "")
        return Readiness(True, f"{self.source} is there ({info.size} bytes){how}",
                         facts={"source_bytes": info.size})

    # -- where and what ---------------------------------------------------------------

    def _dest(self, ctx: Context) -> Path:
        directory = self.dest_dir or ctx.work_dir
        if not directory:
            raise StepError("fetch: no dest_dir given and the job has no work dir; set dest_dir")
        if not self.name or self.name in {".", ".."}:
            raise StepError(f"fetch: source {self.source} does not name a file")
        return Path(directory) / self.name

    def _inspect(self, ctx: Context) -> SourceInfo:
        if self.remote is None:
            return self._local_info()
        with self._sftp(ctx) as sftp:
            return self._remote_info(sftp)

    def _already_there(self, dest: Path, info: SourceInfo) -> bool:
        try:
            st = dest.stat()
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != info.size:
            return False
        if int(st.st_mtime) == int(info.mtime):
            return True
        return info.sha256 is not None and file_sha256(dest) == info.sha256

    # -- local source -----------------------------------------------------------------

    def _local_info(self) -> SourceInfo:
        path = Path(self.source)
        if not path.is_absolute():
            raise StepError(f"fetch: local source {self.source} must be an absolute path")
        try:
            st = path.stat()
        except FileNotFoundError:
            raise StepError(f"fetch: {self.source} does not exist; check the path") from None
        except OSError as exc:
            raise StepError(f"fetch: {self.source} cannot be read: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise StepError(f"fetch: {self.source} is not a regular file")
        digest = None
        if self.sha256:
            sidecar = Path(f"{self.source}.sha256")
            try:
                raw = read_limited(sidecar, "checksum").decode("utf-8", errors="replace")
            except FileRefused as exc:
                if exc.missing:
                    raise StepError(
                        f"fetch: sha256 is on but {sidecar} does not exist; "
                        f"write it or set sha256: false"
                    ) from None
                raise StepError(f"fetch: {exc}") from None
            digest = read_sidecar(raw, str(sidecar))
        return SourceInfo(st.st_size, st.st_mtime, digest)

    def _copy_local(self, ctx: Context, source: Path, info: SourceInfo, dest: Path) -> None:
        with source.open("rb") as src:
            self._write_atomically(
                ctx, dest, info, lambda sink: shutil.copyfileobj(src, sink, _CHUNK)
            )

    # -- remote source ----------------------------------------------------------------

    @contextlib.contextmanager
    def _sftp(self, ctx: Context) -> Iterator[paramiko.SFTPClient]:
        assert self.remote is not None
        remote = self.remote
        where = f"{remote.user}@{remote.host}:{self.port}"
        if self.known_hosts is None or self.identity is None:
            raise StepError(f"fetch: {self.source} is remote; set known_hosts and identity")
        check_private_key_file(self.identity)
        key = _load_key(self.identity)
        client = paramiko.SSHClient()
        load_known_hosts(self.known_hosts, client.get_host_keys())
        client.set_missing_host_key_policy(_RefuseUnknownHost())
        timeout = min(_CONNECT_TIMEOUT, ctx.remaining(_CONNECT_TIMEOUT))
        try:
            client.connect(
                remote.host,
                port=self.port,
                username=remote.user,
                pkey=key,
                allow_agent=False,
                look_for_keys=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
            )
            sftp = client.open_sftp()
        except _UnknownHostKey as exc:
            client.close()
            raise StepError(
                f"fetch: host key of {remote.host}:{self.port} is not in {self.known_hosts} "
                f"(server offered {exc.key.get_name()} {fingerprint(exc.key)}); check that "
                f"fingerprint out of band, then add the key to {self.known_hosts}"
            ) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise StepError(
                f"fetch: host key of {remote.host}:{self.port} has CHANGED: server offered "
                f"{exc.key.get_name()} {fingerprint(exc.key)}, {self.known_hosts} expects "
                f"{fingerprint(exc.expected_key)}; refusing (possible impersonation) - if the host "
                f"was rebuilt, replace its line in {self.known_hosts}"
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise StepError(
                f"fetch: {where} refused key {self.identity} ({fingerprint(key)}); add its public "
                f"key to that account's authorized_keys"
            ) from None
        except paramiko.ssh_exception.NoValidConnectionsError:
            client.close()
            raise StepError(
                f"fetch: connection to {remote.host}:{self.port} refused; is sshd running there?",
                retryable=True,
            ) from None
        except TimeoutError:
            client.close()
            raise StepError(
                f"fetch: no answer from {remote.host}:{self.port} within {timeout:.0f}s",
                retryable=True,
            ) from None
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise StepError(f"fetch: ssh to {where} failed: {exc}", retryable=True) from None
        try:
            yield sftp
        finally:
            client.close()

    def _remote_info(self, sftp: paramiko.SFTPClient) -> SourceInfo:
        assert self.remote is not None
        path = self.remote.path
        try:
            attrs = sftp.stat(path)
        except OSError as exc:
            raise _remote_error(self.source, exc) from None
        if attrs.st_mode is not None and not stat.S_ISREG(attrs.st_mode):
            raise StepError(f"fetch: {self.source} is not a regular file")
        digest = None
        if self.sha256:
            sidecar = f"{path}.sha256"
            try:
                with sftp.open(sidecar, "r") as handle:
                    text = handle.read(4096).decode(errors="replace")
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    raise StepError(
                        f"fetch: sha256 is on but {self.remote.host}:{sidecar} does not exist; "
                        f"write it next to the dump or set sha256: false"
                    ) from None
                raise _remote_error(f"{self.remote.host}:{sidecar}", exc) from None
            digest = read_sidecar(text, f"{self.remote.host}:{sidecar}")
        return SourceInfo(int(attrs.st_size or 0), float(attrs.st_mtime or 0), digest)

    def _download(
        self, ctx: Context, sftp: paramiko.SFTPClient, info: SourceInfo, dest: Path
    ) -> None:
        assert self.remote is not None
        path = self.remote.path

        def transfer(sink: _HashingWriter) -> None:
            try:
                sftp.getfo(path, sink)
            except OSError as exc:
                raise _remote_error(self.source, exc) from None

        self._write_atomically(ctx, dest, info, transfer)

    # -- shared: temp file, checks, rename ----------------------------------------------

    def _write_atomically(
        self, ctx: Context, dest: Path, info: SourceInfo, transfer: Callable[[Any], Any]
    ) -> None:
        def check() -> None:
            # The runner cannot kill a worker thread; a long transfer polls for its timeout.
            if ctx.should_stop() or (ctx.deadline is not None and time.monotonic() > ctx.deadline):
                raise StepError(
                    f"fetch: {self.source} interrupted (timeout or stop)", retryable=True
                )

        with private_temp(dest.parent, f".{dest.name}.") as (fd, tmp):
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                sink = _HashingWriter(out, check)
                transfer(sink)
                out.flush()
                os.fsync(out.fileno())
            size = tmp.stat().st_size
            if size != info.size:
                raise StepError(
                    f"fetch: {self.source} arrived with {size} bytes, expected {info.size}; "
                    f"the source may be changing - try again",
                    retryable=True,
                )
            if info.sha256 is not None and sink.digest.hexdigest() != info.sha256:
                raise StepError(
                    f"fetch: {self.source} has SHA-256 {sink.digest.hexdigest()}, its sidecar "
                    f"says {info.sha256}; refusing the file",
                    retryable=True,
                )
            # Keep the source's mtime: it is how the next run recognises "already fetched".
            os.utime(tmp, (info.mtime, info.mtime))
            os.replace(tmp, dest)
        fsync_dir(dest.parent)


def fingerprint(key: paramiko.PKey) -> str:
    """`SHA256:<base64>`, as ssh-keygen -l prints it (paramiko >= 3.2's key.fingerprint;
    Debian 12's paramiko 2.12 lacks it)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _read_key(path: Path) -> paramiko.PKey:
    """The private key in `path`, whatever its type."""
    from_path = getattr(paramiko.PKey, "from_path", None)
    if from_path is not None:  # paramiko >= 3.2 recognises the type itself
        return from_path(path)
    # paramiko 2.12 (Debian 12): each key class reads only its own type; try them in turn.
    failure: Exception | None = None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(str(path))
        except paramiko.PasswordRequiredException:
            raise
        except (paramiko.SSHException, ValueError) as exc:
            failure = exc
    raise failure or paramiko.SSHException("unknown key type")


def _load_key(path: Path) -> paramiko.PKey:
    try:
        return _read_key(path)
    except paramiko.PasswordRequiredException:
        raise StepError(
            f"fetch: identity {path} is protected by a passphrase; use a key without one "
            f"(it is guarded by its file mode)"
        ) from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise StepError(f"fetch: identity {path} is not a usable private key: {exc}") from None


def _remote_error(where: str, exc: OSError) -> StepError:
    if exc.errno == errno.ENOENT:
        return StepError(f"fetch: {where} does not exist on the remote host; check the path")
    if exc.errno == errno.EACCES:
        return StepError(f"fetch: {where} is not readable by the remote user (permission denied)")
    return StepError(f"fetch: reading {where} failed: {exc}", retryable=True)


def _describe(path: Path) -> dict[str, Any] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return {"path": str(path), "size": st.st_size, "mtime": int(st.st_mtime)}
