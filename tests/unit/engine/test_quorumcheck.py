"""`validate --host` with a `quorum:` block reaches the etcd store (engine/quorumcheck.py).

Against a real 3-member etcd (tests/fixtures/etcd.py), a TLS one-member cluster that
demands a client certificate, and closed loopback ports.
"""
from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from engine import cli
from engine.drillkit.pki import Pki
from engine.drillkit.ports import LOOPBACK, free_port
from engine.etcd import EtcdClient, EtcdError, Security, b64, prefix_end
from engine.policy import load_policy
from engine.quorumcheck import store_report
from tests.fixtures.etcd import EtcdCluster, member_certificate, start_cluster
from tests.support import require_binary, wait_until


def write_policy(tmp_path: Path, endpoints: list[str], *, extra: str = "",
                 secrets: str = "", name: str = "obs1") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: storecheck
        state_dir: state
        probes:
          production: {tcp: {host: 127.0.0.1, port: 9, timeout: 1s}}
        monitor: {target: production, interval: 10s, failures_to_engage: 3}
        """) + secrets + textwrap.dedent(f"""\
        quorum:
          endpoints: {json.dumps(endpoints)}
          prefix: /fe-check/
          timeout: 1s
          name: {name}
          observers: [obs1, obs2]
          actors: [obs1]
          engage_when: {{down: 2}}
        """) + textwrap.indent(extra, "  ") + textwrap.dedent("""\
        engage:
          - lock: {state: present}
        restore:
          - lock: {state: absent}
        """))
    return path


def validate_host(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str],
                                                                          list[str]]:
    code = cli.main(["--policy", str(path), "validate", "--host"])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_every_member_reachable_with_a_leader(etcd_cluster: EtcdCluster, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy(tmp_path, etcd_cluster.endpoints)
    code, out, err = validate_host(path, capsys)
    assert (code, err) == (0, [])
    reached = out[:-1]
    assert [line.split(": ")[2] for line in reached] == etcd_cluster.endpoints
    for line in reached:
        assert line.startswith(f"{path}: quorum store: http://127.0.0.1:")
        assert "reachable (etcd 3." in line and "/fe-check/ readable" in line
    # Exactly one member says it is the leader; the others name it.
    assert sum("the leader" in line for line in reached) == 1
    assert out[-1] == (f"OK: {path}: policy 'storecheck' (1 engage steps, 1 restore steps, "
                       "0 jobs); host checks passed")


def test_closed_ports_are_each_named_and_fail_the_host_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    path = write_policy(tmp_path, closed)
    code, out, err = validate_host(path, capsys)
    assert (code, out) == (2, [])
    assert err == [
        f"{path}: host check: quorum.endpoints[0]: {closed[0]}: unreachable: connection refused",
        f"{path}: host check: quorum.endpoints[1]: {closed[1]}: unreachable: connection refused",
        f"{path}: host check: quorum: the store cannot be reached with a leader through any "
        "endpoint: nobody would engage automatically"]


def test_one_member_down_is_named_the_others_reached(
        etcd_cluster: EtcdCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A follower, so the other two keep their leader (no election to wait through).
    leader = etcd_cluster.leader()
    down = next(i for i in range(3) if i != leader)
    etcd_cluster.stop(down)
    path = write_policy(tmp_path, etcd_cluster.endpoints)
    code, out, err = validate_host(path, capsys)
    assert code == 2
    assert len(out) == 2 and all("reachable (etcd" in line for line in out), out + err
    assert err == [f"{path}: host check: quorum.endpoints[{down}]: "
                   f"{etcd_cluster.endpoints[down]}: unreachable: connection refused"]


def test_majority_lost_the_last_member_answers_without_a_leader(
        etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    etcd_cluster.stop(0)
    etcd_cluster.stop(1)
    path = write_policy(tmp_path, etcd_cluster.endpoints)
    policy = load_policy(path)
    last = etcd_cluster.endpoints[2]
    # Until the member notices its leader is gone it may still name it; the consistent
    # read fails either way, and never is anything reached.
    wait_until(lambda: any(p.startswith(f"quorum.endpoints[2]: {last}: answers (etcd 3.")
                           and "no leader" in p for p in store_report(policy).problems),
               30, "the last member to report no leader")
    report = store_report(policy)
    assert report.reached == []
    assert report.problems[-1].startswith("quorum: the store cannot be reached")


def test_a_second_cluster_among_the_endpoints_is_named(
        etcd_cluster: EtcdCluster, tmp_path_factory: pytest.TempPathFactory,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = start_cluster(tmp_path_factory.mktemp("other-etcd"), 1)
    try:
        path = write_policy(tmp_path, [*etcd_cluster.endpoints[:2], *other.endpoints])
        code, out, err = validate_host(path, capsys)
    finally:
        other.stop_all()
    assert code == 2
    assert len(out) == 3  # each answers with a leader of its own
    (line,) = err
    assert line.startswith(f"{path}: host check: quorum.endpoints: the endpoints belong to "
                           "different etcd clusters (cluster ")
    assert line.endswith("; list the members of one cluster")


def test_mutual_tls_with_the_policy_files(pki: Pki, tmp_path_factory: pytest.TempPathFactory,
                                         tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path_factory.mktemp("etcd-tls")
    member_cert, member_key = member_certificate(pki.ca.cert, pki.ca.key, root)
    good = Security(ca=pki.ca.cert, cert=pki.client.cert, key=pki.client.key)
    cluster = start_cluster(root / "cluster", 1, tls=(pki.ca.cert, member_cert, member_key),
                            probe=lambda e: EtcdClient([e], timeout=1.0, security=good))
    try:
        endpoint = cluster.endpoints[0]

        def check(ca: Path, cert: Path, key: Path) -> tuple[int, list[str], list[str]]:
            write_policy(tmp_path, [endpoint], extra=f"ca: {ca}\nclient_cert: {cert}\n"
                                                     f"client_key: {key}\n")
            return validate_host(tmp_path / "policy.yaml", capsys)

        code, out, err = check(pki.ca.cert, pki.client.cert, pki.client.key)
        assert (code, err) == (0, [])
        assert out[0].startswith(f"{tmp_path / 'policy.yaml'}: quorum store: {endpoint}: "
                                 "reachable (etcd 3.")
        assert "the leader" in out[0]
        # A certificate from another CA: the member refuses the handshake.
        code, out, err = check(pki.ca.cert, pki.wrong_client.cert, pki.wrong_client.key)
        assert (code, out) == (2, [])
        assert err[0].startswith(f"{tmp_path / 'policy.yaml'}: host check: "
                                 f"quorum.endpoints[0]: {endpoint}: unreachable: ")
        # A CA file that does not load: named, and the store is not asked.
        code, out, err = check(tmp_path / "no-ca.pem", pki.client.cert, pki.client.key)
        assert (code, out) == (2, [])
        (line,) = err
        assert line.startswith(f"{tmp_path / 'policy.yaml'}: host check: quorum.ca: cannot "
                               f"load {tmp_path / 'no-ca.pem'}: ")
        # A client key others may read is refused like a secret.
        pki.client.key.chmod(0o644)
        try:
            code, out, err = check(pki.ca.cert, pki.client.cert, pki.client.key)
        finally:
            pki.client.key.chmod(0o600)
        assert code == 2
        assert err == [f"{tmp_path / 'policy.yaml'}: host check: quorum.client_key: "
                       f"{pki.client.key}: mode 0644 lets group or others access a secret "
                       f"(chmod 600 {pki.client.key})"]
    finally:
        cluster.stop_all()


def start_user_cluster(root: Path, pki: Pki) -> tuple[subprocess.Popen[bytes], str]:
    """One etcd member over TLS *without* client certificates, user auth enabled (etcd
    refuses client certificates together with user auth on its JSON gateway)."""
    binary = require_binary("etcd")
    cert, key = member_certificate(pki.ca.cert, pki.ca.key, root)
    client, peer = free_port(), free_port()
    endpoint = f"https://{LOOPBACK}:{client}"
    log = (root / "etcd.log").open("ab")
    process = subprocess.Popen(
        [binary, "--name", "u0", "--data-dir", str(root / "data"),
         "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
         "--listen-peer-urls", f"http://{LOOPBACK}:{peer}",
         "--initial-advertise-peer-urls", f"http://{LOOPBACK}:{peer}",
         "--initial-cluster", f"u0=http://{LOOPBACK}:{peer}",
         "--cert-file", str(cert), "--key-file", str(key), "--logger", "zap",
         "--log-outputs", "stderr"], stdout=log, stderr=log, start_new_session=True)
    admin = EtcdClient([endpoint], timeout=1.0, security=Security(ca=pki.ca.cert))

    def ready() -> bool:
        try:
            admin.range("health-probe")
            return True
        except EtcdError:
            return False

    try:
        wait_until(ready, 30, "the TLS etcd member")
        for path, body in (
                ("/v3/auth/user/add", {"name": "root", "password": "rootpw"}),
                ("/v3/auth/role/add", {"name": "root"}),
                ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
                ("/v3/auth/user/add", {"name": "fe", "password": "s3cret"}),
                ("/v3/auth/role/add", {"name": "fe"}),
                ("/v3/auth/role/grant", {"name": "fe", "perm": {
                    "permType": "READWRITE", "key": b64("/fe-check/"),
                    "range_end": b64(prefix_end(b"/fe-check/"))}}),
                ("/v3/auth/user/grant", {"user": "fe", "role": "fe"}),
                ("/v3/auth/enable", {})):
            admin.call(path, body)
    except BaseException:
        process.kill()
        process.wait(10)
        raise
    return process, endpoint


def test_user_and_password_from_the_secrets_file(
        pki: Pki, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    process, endpoint = start_user_cluster(tmp_path_factory.mktemp("etcd-user"), pki)
    try:
        secret = tmp_path / "etcd-password"
        secrets = "secrets:\n  etcd: etcd-password\n"
        extra = f"ca: {pki.ca.cert}\nuser: fe\npassword_secret: etcd\n"
        path = write_policy(tmp_path, [endpoint], extra=extra, secrets=secrets)
        secret.write_text("s3cret\n")
        secret.chmod(0o600)
        code, out, err = validate_host(path, capsys)
        assert (code, err) == (0, [])
        assert out[0].startswith(f"{path}: quorum store: {endpoint}: reachable (etcd 3.")
        assert out[0].endswith(", the leader, user fe authenticated; /fe-check/ readable)")
        # A wrong password: etcd's own words, one line.
        secret.write_text("wrong\n")
        code, out, err = validate_host(path, capsys)
        assert (code, out) == (2, [])
        assert err[0] == (f"{path}: host check: quorum.endpoints[0]: {endpoint}: etcd at "
                          f"{endpoint} refused user fe: etcdserver: authentication failed, "
                          "invalid user ID or password")
        # A password file others may read: the secrets check names it, the store is not
        # asked (the password is never sent).
        secret.write_text("s3cret\n")
        secret.chmod(0o644)
        code, out, err = validate_host(path, capsys)
        assert code == 2
        assert err == [
            f"{path}: host check: secrets.etcd: {secret}: mode 0644 lets group or others "
            f"access a secret (chmod 600 {secret})",
            f"{path}: host check: quorum.password_secret: secret 'etcd' cannot be read, so "
            "the store was not asked"]
    finally:
        process.kill()
        process.wait(10)


def test_this_observer_must_be_one_of_the_observers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy(tmp_path, [f"http://127.0.0.1:{free_port()}"], name="obs9")
    code, out, err = validate_host(path, capsys)
    assert (code, out) == (2, [])
    assert any("quorum.name: observer 'obs9' is not one of quorum.observers (obs1, obs2)"
               in line for line in err), err
