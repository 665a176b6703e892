"""`validate --host` with a `quorum:` block: can this observer reach the etcd store?

For each endpoint, on its own (so every member's problem is named, not only the last):
connect with the policy's TLS files or user and password (the password from the secrets
file), authenticate when there is a user, ask the member's status, and read the policy's
key prefix linearizably (which needs a leader and a majority, and the user's permission
on the prefix). One line per endpoint: reachable, with etcd's version, the member and its
leader, or the problem. The endpoints must belong to one cluster. The TLS files must load
and the client key must be private.

Only `validate --host` connects: the checks before `run`, `engage` and `restore` never do
(engine/hostcheck.py), so an etcd outage cannot stop `engage --now --without-quorum`.
This observer's `name` being one of `observers` is a policy rule (engine/quorum.py's
`quorum_reference_problems`), reported before any host check.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import FailoverError
from engine.etcd import EtcdClient, EtcdError, EtcdUnavailable, Security
from engine.quorum import QuorumSpec, quorum_spec, store_password
from engine.secrets import check_secret_file
from engine.tlsfiles import tls_file_problems


@dataclass
class StoreReport:
    """What `validate --host` says about the store: `reached` (one line per endpoint that
    answered with a leader) and `problems` (one line each, key first)."""

    reached: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def store_report(policy: Any) -> StoreReport:
    """Reach every endpoint of the policy's quorum block (an empty report without one)."""
    report = StoreReport()
    spec = quorum_spec(policy)
    if spec is None:
        return report
    report.problems.extend(_tls_problems(spec))
    if report.problems:
        return report  # the TLS files do not load: connecting would only repeat that
    try:
        password = store_password(policy, spec)
    except (OSError, FailoverError):
        # The secrets check names the file's problem; without it no login can work.
        report.problems.append(f"quorum.password_secret: secret {spec.password_secret!r} "
                               "cannot be read, so the store was not asked")
        return report
    security = Security(ca=spec.ca, cert=spec.client_cert, key=spec.client_key,
                        user=spec.user, password=password)
    clusters: dict[str, list[str]] = {}
    for index, endpoint in enumerate(spec.endpoints):
        where = f"quorum.endpoints[{index}]: {endpoint}"
        try:
            ok, line, cluster = _check_endpoint(endpoint, spec, security)
        except EtcdUnavailable as exc:
            report.problems.append(f"{where}: unreachable: {_unreachable(exc, endpoint)}")
            continue
        except (EtcdError, FailoverError) as exc:
            report.problems.append(f"{where}: {exc}")
            continue
        if ok:
            report.reached.append(f"quorum store: {endpoint}: {line}")
        else:
            report.problems.append(f"{where}: {line}")
        clusters.setdefault(cluster, []).append(endpoint)
    if len(clusters) > 1:
        groups = "; ".join(f"cluster {cid}: {', '.join(names)}" for cid, names in clusters.items())
        report.problems.append(f"quorum.endpoints: the endpoints belong to different etcd "
                               f"clusters ({groups}); list the members of one cluster")
    if not report.reached:
        report.problems.append("quorum: the store cannot be reached with a leader through any "
                               "endpoint: nobody would engage automatically")
    return report


def _check_endpoint(endpoint: str, spec: QuorumSpec, security: Security
                    ) -> tuple[bool, str, str]:
    """(reached with a leader, one line, cluster id) for one endpoint; EtcdError when it
    does not answer or refuses."""
    client = EtcdClient([endpoint], timeout=spec.timeout, security=security)
    if spec.user:
        client.authenticate()  # EtcdError with etcd's words for a wrong password
    status = client.status()
    found = status.get("header")
    header: dict[str, Any] = found if isinstance(found, dict) else {}
    cluster = str(header.get("cluster_id", "?"))
    member, leader = _hex(header.get("member_id")), _hex(status.get("leader"))
    version = status.get("version") or "?"
    if leader in ("0", "?"):
        return False, (f"answers (etcd {version}, member {member}) but has no leader: the "
                       "cluster has lost its majority or this member is cut off from it"), cluster
    # A linearizable read of our own prefix: a majority behind the leader, and (with a
    # user) the permission the engine needs.
    try:
        client.range(spec.prefix, prefix=True)
    except EtcdError as exc:
        why = _unreachable(exc, endpoint) if isinstance(exc, EtcdUnavailable) else str(exc)
        return False, (f"answers (etcd {version}, member {member}) but a consistent read "
                       f"of {spec.prefix} failed: {why}"), cluster
    who = f", user {spec.user} authenticated" if spec.user else ""
    role = "the leader" if leader == member else f"leader {leader}"
    return True, (f"reachable (etcd {version}, member {member}, {role}{who}; "
                  f"{spec.prefix} readable)"), cluster


def _tls_problems(spec: QuorumSpec) -> list[str]:
    """The CA and client certificate must load; the client key must be a private file."""
    problems = []
    files = {"client_cert": str(spec.client_cert) if spec.client_cert else None,
             "client_key": str(spec.client_key) if spec.client_key else None,
             "ca_file": str(spec.ca) if spec.ca else None}
    for line in tls_file_problems(files):
        problems.append("quorum." + line.replace("ca_file: ", "ca: ", 1))
    if spec.client_key is not None:
        problem = check_secret_file(spec.client_key)
        if problem:
            problems.append(f"quorum.client_key: {problem}")
    return problems


def _hex(value: Any) -> str:
    """etcd's uint64 ids (decimal strings on the gateway) as etcdctl shows them."""
    try:
        return f"{int(value):x}"
    except (TypeError, ValueError):
        return "?"


def _unreachable(exc: EtcdError, endpoint: str) -> str:
    return str(exc).removeprefix("etcd unreachable: ").removeprefix(f"{endpoint}: ")
