"""A thin etcd v3 client over etcd's JSON gateway (grpc-gateway), on the standard library.

Why not a PyPI client: the grpc ones are stale (etcd3 0.12 fails to import with current
protobuf) or asyncio-only, and etcd3gw takes one endpoint per client. The JSON gateway
is what Patroni's etcd3 module talks to as well.

What it does, and only that:
- every endpoint is tried in turn (the one that answered last first); a call fails with
  `EtcdUnavailable` only when none answers, naming each endpoint's problem;
- reads are linearizable (`serializable` is never set): a decision never rests on a
  member's stale copy (a non-consistent read showed an expired key 23 s late);
- keys and values travel base64-encoded, int64 fields as JSON strings (the gateway's
  protobuf JSON mapping); this module hands out `bytes` and `int`;
- leases: grant, keep-alive (one refresh, the first message of the gateway's stream),
  revoke; put with a lease; a compare-and-swap transaction that creates a key only if
  it is absent (`create`), whose create revision is a fencing token; range with a prefix;
- security: TLS with a CA, mutual TLS (client certificate and key), or TLS plus a user
  and password (`/v3/auth/authenticate` gives a token sent as `Authorization`; etcd
  refuses client certificates together with user auth on the gateway).

An answer from etcd that says no (a gRPC error such as "lease not found", or
"etcdserver: no leader") is `EtcdError`: the member answered, but the store did not do
it; a majority lost shows up as a timeout or "no leader" on every endpoint, which is
`EtcdUnavailable`.
"""
from __future__ import annotations

import base64
import http.client
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.errors import FailoverError

# A decision read or write that takes longer than this is no better than none.
DEFAULT_TIMEOUT = 2.0
# Answers we accept from the gateway (a JSON document, never a stream of them).
MAX_ANSWER = 4 * 1024 * 1024


class EtcdError(FailoverError):
    """etcd answered but refused or failed the request (its own words)."""


class EtcdUnavailable(EtcdError):
    """No endpoint gave an answer (each endpoint's problem is in the message)."""


@dataclass(frozen=True)
class KeyValue:
    """One key as a range returns it; the revisions are etcd's."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


@dataclass(frozen=True)
class Lease:
    """A granted lease: its id and the TTL etcd gave it (seconds)."""

    id: int
    ttl: int


@dataclass(frozen=True)
class CreateResult:
    """A create-if-absent transaction's outcome: `created`, and the key as it stands (ours
    when created: its create revision is the fencing token; the holder's otherwise)."""

    created: bool
    revision: int
    current: KeyValue | None


@dataclass
class Security:
    """How to reach the members: a CA for TLS, a client certificate (mutual TLS) or a user
    and password (TLS plus user auth). Plain http endpoints use none of it."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr or a log


def b64(data: bytes | str) -> str:
    """The gateway's encoding of a key or value."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with `prefix` (etcd's rule: the
    prefix with its last byte below 0xff incremented)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\x00"  # every key
    return stripped[:-1] + bytes([stripped[-1] + 1])


class EtcdClient:
    """One client for a list of endpoints (`http://127.0.0.1:2379`, `https://…`)."""

    def __init__(self, endpoints: list[str], *, timeout: float = DEFAULT_TIMEOUT,
                 security: Security | None = None) -> None:
        if not endpoints:
            raise EtcdError("no etcd endpoint given")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.security = security or Security()
        self._preferred = 0
        self._token: str | None = None
        self._context: ssl.SSLContext | None = None
        for endpoint in self.endpoints:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise EtcdError(f"etcd endpoint {endpoint!r}: expected http://HOST:PORT or "
                                "https://HOST:PORT")

    # -- transport --------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            sec = self.security
            context = ssl.create_default_context(cafile=str(sec.ca) if sec.ca else None)
            if sec.cert is not None:
                context.load_cert_chain(str(sec.cert), str(sec.key) if sec.key else None)
            self._context = context
        return self._context

    def _post_one(self, endpoint: str, path: str, body: dict[str, Any],
                  timeout: float) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "", parts.port
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(host, port or 2379, timeout=timeout,
                                                     context=self._ssl())
        else:
            connection = http.client.HTTPConnection(host, port or 2379, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if self._token and path != "/v3/auth/authenticate":
            headers["Authorization"] = self._token
        try:
            connection.request("POST", path, body=json.dumps(body).encode(), headers=headers)
            response = connection.getresponse()
            # keepalive answers as a stream of JSON documents: the first line is the one.
            raw = response.readline(MAX_ANSWER) if path == "/v3/lease/keepalive" \
                else response.read(MAX_ANSWER + 1)
            status = response.status
        finally:
            connection.close()
        if len(raw) > MAX_ANSWER:
            raise EtcdError(f"{endpoint}{path}: answer larger than {MAX_ANSWER} bytes")
        try:
            document = json.loads(raw or b"{}")
        except ValueError:
            raise EtcdError(f"{endpoint}{path}: not a JSON answer (HTTP {status})") from None
        if not isinstance(document, dict):
            raise EtcdError(f"{endpoint}{path}: unexpected answer (HTTP {status})")
        return status, document

    def call(self, path: str, body: dict[str, Any], *, timeout: float | None = None
             ) -> dict[str, Any]:
        """POST `body` to `path` on the first endpoint that answers; return the answer.

        A member without a leader ("etcdserver: no leader", a timeout) is skipped like a
        dead one; any other error etcd states is `EtcdError` at once."""
        problems: list[str] = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._preferred + step) % count
            endpoint = self.endpoints[index]
            try:
                status, document = self._post_one(endpoint, path, body,
                                                  timeout or self.timeout)
            except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
                problems.append(f"{endpoint}: {_why(exc)}")
                continue
            error = _error_text(document)
            stale = error is not None and (status == 401 or "invalid auth token" in error
                                           or "user name is empty" in error)
            if stale and self.security.user and path != "/v3/auth/authenticate":
                # Tokens expire (or belong to another member's simple-token store):
                # authenticate again on this endpoint and retry once.
                try:
                    self._authenticate(endpoint)
                    status, document = self._post_one(endpoint, path, body,
                                                      timeout or self.timeout)
                    error = _error_text(document)
                except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
                    problems.append(f"{endpoint}: {_why(exc)}")
                    continue
            if error is not None:
                if _unavailable(error):
                    problems.append(f"{endpoint}: {error}")
                    continue
                raise EtcdError(f"etcd {path} refused at {endpoint}: {error}")
            if status != 200:
                problems.append(f"{endpoint}: HTTP {status}")
                continue
            self._preferred = index
            return document
        raise EtcdUnavailable("etcd unreachable: " + "; ".join(problems))

    def _authenticate(self, endpoint: str) -> None:
        sec = self.security
        status, document = self._post_one(endpoint, "/v3/auth/authenticate",
                                          {"name": sec.user, "password": sec.password},
                                          self.timeout)
        token = document.get("token")
        if status != 200 or not isinstance(token, str):
            raise EtcdError(f"etcd at {endpoint} refused user {sec.user}: "
                            f"{_error_text(document) or f'HTTP {status}'}")
        self._token = token

    def authenticate(self) -> None:
        """Get a token for the policy's user (first endpoint that answers)."""
        problems: list[str] = []
        for endpoint in self.endpoints:
            try:
                self._authenticate(endpoint)
                return
            except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
                problems.append(f"{endpoint}: {_why(exc)}")
        raise EtcdUnavailable("etcd unreachable: " + "; ".join(problems))

    def _maybe_login(self) -> None:
        if self.security.user and self._token is None:
            self.authenticate()

    # -- key-value ----------------------------------------------------------------------
    def put(self, key: bytes | str, value: bytes | str, *, lease: int | None = None) -> int:
        """Write `key`; return the store's revision after the write."""
        self._maybe_login()
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        answer = self.call("/v3/kv/put", body)
        return _int(answer.get("header", {}).get("revision"))

    def get(self, key: bytes | str) -> KeyValue | None:
        """One key, read linearizably; None when absent."""
        found = self.range(key)
        return found[0] if found else None

    def range(self, key: bytes | str, *, prefix: bool = False) -> list[KeyValue]:
        """The key (or every key under the prefix), read linearizably."""
        self._maybe_login()
        raw = key.encode() if isinstance(key, str) else key
        body: dict[str, Any] = {"key": b64(raw)}
        if prefix:
            body["range_end"] = b64(prefix_end(raw))
        answer = self.call("/v3/kv/range", body)
        return [_kv(item) for item in answer.get("kvs") or []]

    def delete(self, key: bytes | str, *, prefix: bool = False) -> int:
        """Delete the key (or the prefix); return how many keys went."""
        self._maybe_login()
        raw = key.encode() if isinstance(key, str) else key
        body: dict[str, Any] = {"key": b64(raw)}
        if prefix:
            body["range_end"] = b64(prefix_end(raw))
        return _int(self.call("/v3/kv/deleterange", body).get("deleted"))

    def create(self, key: bytes | str, value: bytes | str, *, lease: int | None = None
               ) -> CreateResult:
        """Create `key` only if it does not exist (a transaction comparing its create
        revision with 0); say whether it was created and what the key holds now."""
        self._maybe_login()
        put: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            put["lease"] = str(lease)
        body = {
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": put}, {"request_range": {"key": b64(key)}}],
            "failure": [{"request_range": {"key": b64(key)}}],
        }
        answer = self.call("/v3/kv/txn", body)
        created = bool(answer.get("succeeded"))
        current: KeyValue | None = None
        for response in answer.get("responses") or []:
            kvs = (response.get("response_range") or {}).get("kvs") or []
            if kvs:
                current = _kv(kvs[0])
        return CreateResult(created, _int(answer.get("header", {}).get("revision")), current)

    def put_if_created_at(self, guard_key: bytes | str, create_revision: int,
                          key: bytes | str, value: bytes | str, *,
                          lease: int | None = None) -> bool:
        """Write `key` (attached to `lease`, if given) only while `guard_key` still has
        `create_revision` (the fencing token): a deposed holder's late write is refused.
        True when written."""
        self._maybe_login()
        put: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            put["lease"] = str(lease)
        body = {
            "compare": [{"key": b64(guard_key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": str(create_revision)}],
            "success": [{"request_put": put}],
            "failure": [],
        }
        return bool(self.call("/v3/kv/txn", body).get("succeeded"))

    def delete_if_created_at(self, key: bytes | str, create_revision: int) -> bool:
        """Delete `key` only if it is still the one created at `create_revision`."""
        self._maybe_login()
        body = {
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": str(create_revision)}],
            "success": [{"request_delete_range": {"key": b64(key)}}],
            "failure": [],
        }
        return bool(self.call("/v3/kv/txn", body).get("succeeded"))

    # -- leases ------------------------------------------------------------------------
    def grant(self, ttl: int) -> Lease:
        """A new lease of `ttl` seconds."""
        self._maybe_login()
        answer = self.call("/v3/lease/grant", {"TTL": str(int(ttl)), "ID": "0"})
        if answer.get("error"):
            raise EtcdError(f"etcd refused a lease: {answer['error']}")
        return Lease(_int(answer.get("ID")), _int(answer.get("TTL")))

    def keepalive(self, lease: int) -> int:
        """Refresh the lease once; return its TTL now. A lease that has expired (or was
        revoked) is `EtcdError` ("lease expired"): the key it carried is gone."""
        self._maybe_login()
        answer = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        result = answer.get("result", answer)
        ttl = _int(result.get("TTL")) if isinstance(result, dict) else 0
        if ttl <= 0:
            raise EtcdError(f"etcd lease {lease:x} expired")
        return ttl

    def time_to_live(self, lease: int) -> int:
        """The lease's remaining TTL in seconds (-1: expired or unknown)."""
        self._maybe_login()
        answer = self.call("/v3/lease/timetolive", {"ID": str(lease)})
        return _int(answer.get("TTL"), default=-1)

    def revoke(self, lease: int) -> None:
        """Revoke the lease (its keys go at once); an expired lease is not an error."""
        self._maybe_login()
        try:
            self.call("/v3/lease/revoke", {"ID": str(lease)})
        except EtcdError as exc:
            if "lease not found" not in str(exc):
                raise

    def status(self) -> dict[str, Any]:
        """The answering member's status (leader id, raft term, version)."""
        return self.call("/v3/maintenance/status", {})


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _kv(item: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=base64.b64decode(item.get("key") or ""),
        value=base64.b64decode(item.get("value") or ""),
        create_revision=_int(item.get("create_revision")),
        mod_revision=_int(item.get("mod_revision")),
        lease=_int(item.get("lease")),
    )


def _error_text(document: dict[str, Any]) -> str | None:
    """The gateway's error (`{"error": …, "code": …}`, or inside a stream's `error`)."""
    error = document.get("error")
    if isinstance(error, dict):
        error = error.get("message") or error.get("error") or json.dumps(error)
    if error:
        return str(error)[:300]
    return None


def _unavailable(error: str) -> bool:
    """Errors that mean this member cannot serve now (try the next one)."""
    words = ("no leader", "timed out", "timeout", "leader changed", "not capable",
             "too many requests", "unavailable", "stopped")
    return any(word in error.lower() for word in words)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    return text[:200]
