"""engine/etcd.py against a real 3-member etcd 3.4 on loopback (tests/fixtures/etcd.py)."""
from __future__ import annotations

import pytest

from engine.drillkit.pki import Pki
from engine.drillkit.ports import free_port
from engine.etcd import EtcdClient, EtcdError, EtcdUnavailable, Security, b64, prefix_end
from tests.fixtures.etcd import EtcdCluster, member_certificate, start_cluster
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_prefix_end_and_encoding() -> None:
    assert prefix_end(b"fe/") == b"fe0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff") == b"\x00"
    assert b64("fe/x") == "ZmUveA=="


def test_endpoint_must_be_a_url() -> None:
    with pytest.raises(EtcdError, match="expected http://HOST:PORT"):
        EtcdClient(["127.0.0.1:2379"])
    with pytest.raises(EtcdError, match="no etcd endpoint"):
        EtcdClient([])


def test_put_range_prefix_delete(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    client.put("fe/a", "1")
    client.put("fe/b", b"\x00\xff")
    client.put("fz", "outside")
    found = client.range("fe/", prefix=True)
    assert [(kv.key, kv.value) for kv in found] == [(b"fe/a", b"1"), (b"fe/b", b"\x00\xff")]
    assert client.get("fz").value == b"outside"  # type: ignore[union-attr]
    assert client.get("fe/none") is None
    assert client.delete("fe/", prefix=True) == 2
    assert client.range("fe/", prefix=True) == []


def test_create_if_absent_is_a_fencing_token(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    lease = client.grant(30)
    first = client.create("fe/leader", "a", lease=lease.id)
    assert first.created and first.current is not None
    token = first.current.create_revision
    assert first.current.lease == lease.id
    second = client.create("fe/leader", "b")
    assert not second.created
    assert second.current is not None and second.current.value == b"a"
    assert second.current.create_revision == token
    # Writes guarded by the token pass while the key is that one, and are refused after.
    assert client.put_if_created_at("fe/leader", token, "fe/state", "engaging")
    client.revoke(lease.id)
    assert client.get("fe/leader") is None  # the lease took its key
    third = client.create("fe/leader", "c")
    assert third.created and third.current is not None
    assert third.current.create_revision > token
    assert not client.put_if_created_at("fe/leader", token, "fe/state", "late")
    assert client.get("fe/state").value == b"engaging"  # type: ignore[union-attr]
    assert not client.delete_if_created_at("fe/leader", token)
    assert client.delete_if_created_at("fe/leader", third.current.create_revision)


def test_lease_keepalive_expiry_and_revoke(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client()
    lease = client.grant(2)
    assert lease.ttl == 2
    client.put("fe/verdict", "down", lease=lease.id)
    assert client.keepalive(lease.id) == 2
    # Not refreshed any more: the key vanishes on its own, and the lease is gone.
    wait_until(lambda: client.get("fe/verdict") is None, 15, "the leased key to expire")
    with pytest.raises(EtcdError, match="expired"):
        client.keepalive(lease.id)
    client.revoke(lease.id)  # an expired lease is not an error to revoke


def test_every_endpoint_is_tried(etcd_cluster: EtcdCluster) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client = EtcdClient([dead, *etcd_cluster.endpoints], timeout=2.0)
    client.put("fe/k", "v")
    assert client.get("fe/k").value == b"v"  # type: ignore[union-attr]
    with pytest.raises(EtcdUnavailable, match="connection refused"):
        EtcdClient([dead], timeout=1.0).get("fe/k")


def test_leader_killed_then_majority_lost(etcd_cluster: EtcdCluster) -> None:
    client = etcd_cluster.client(timeout=2.0)
    client.put("fe/k", "1")
    leader = etcd_cluster.leader()
    assert leader is not None
    etcd_cluster.stop(leader)
    # Two of three remain: a new leader, and writes and consistent reads go on.
    wait_until(lambda: _works(client), 20, "the store to serve again without its leader")
    assert client.get("fe/k").value == b"2"  # type: ignore[union-attr]
    other = next(i for i in range(3) if i != leader)
    etcd_cluster.stop(other)
    # One of three: no consistent read anywhere, and the error says why, per endpoint.
    with pytest.raises(EtcdUnavailable, match="etcd unreachable") as caught:
        client.get("fe/k")
    assert "connection refused" in str(caught.value)
    etcd_cluster.start(other)
    wait_until(lambda: _readable(client), 30, "the majority to be back")
    assert client.get("fe/k").value == b"2"  # type: ignore[union-attr]


def _works(client: EtcdClient) -> bool:
    try:
        client.put("fe/k", "2")
        return True
    except EtcdError:
        return False


def _readable(client: EtcdClient) -> bool:
    try:
        client.get("fe/k")
        return True
    except EtcdError:
        return False


def test_user_and_password(etcd_cluster: EtcdCluster) -> None:
    admin = etcd_cluster.client()
    admin.call("/v3/auth/user/add", {"name": "root", "password": "rootpw"})
    admin.call("/v3/auth/role/add", {"name": "root"})
    admin.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
    admin.call("/v3/auth/user/add", {"name": "fe", "password": "s3cret"})
    admin.call("/v3/auth/role/add", {"name": "fe"})
    admin.call("/v3/auth/role/grant", {"name": "fe", "perm": {
        "permType": "READWRITE", "key": b64("fe/"), "range_end": b64(prefix_end(b"fe/"))}})
    admin.call("/v3/auth/user/grant", {"user": "fe", "role": "fe"})
    admin.call("/v3/auth/enable", {})
    user = etcd_cluster.client(security=Security(user="fe", password="s3cret"))
    user.put("fe/k", "v")
    lease = user.grant(10)
    assert user.create("fe/leader", "me", lease=lease.id).created
    # The role is limited to the prefix; a wrong password is refused with etcd's words.
    with pytest.raises(EtcdError, match="permission denied"):
        user.put("other", "x")
    wrong = etcd_cluster.client(security=Security(user="fe", password="nope"))
    with pytest.raises(EtcdError, match="authentication failed"):
        wrong.get("fe/k")
    anonymous = etcd_cluster.client()
    with pytest.raises(EtcdError):
        anonymous.get("fe/k")
    assert "s3cret" not in repr(user.security)


def test_mutual_tls(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> None:
    def client(**kwargs: object) -> EtcdClient:
        return EtcdClient(cluster_endpoints, timeout=2.0,
                          security=Security(**kwargs))  # type: ignore[arg-type]

    good = {"ca": pki.ca.cert, "cert": pki.client.cert, "key": pki.client.key}
    cluster_endpoints: list[str] = []
    root = tmp_path_factory.mktemp("etcd-tls")
    member_cert, member_key = member_certificate(pki.ca.cert, pki.ca.key, root)
    cluster = start_cluster(root / "cluster", 1, tls=(pki.ca.cert, member_cert, member_key),
                            probe=lambda e: EtcdClient([e], timeout=1.0,
                                                       security=Security(**good)))
    try:
        cluster_endpoints.extend(cluster.endpoints)
        assert cluster_endpoints[0].startswith("https://")
        ours = client(**good)
        ours.put("fe/k", "v")
        assert ours.get("fe/k").value == b"v"  # type: ignore[union-attr]
        # No client certificate, one from another CA, or a server we cannot verify: no.
        with pytest.raises(EtcdUnavailable):
            client(ca=pki.ca.cert).get("fe/k")
        with pytest.raises(EtcdUnavailable):
            client(ca=pki.ca.cert, cert=pki.wrong_client.cert, key=pki.wrong_client.key
                   ).get("fe/k")
        with pytest.raises(EtcdUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            client(ca=pki.wrong_ca.cert, cert=pki.client.cert, key=pki.client.key
                   ).get("fe/k")
    finally:
        cluster.stop_all()
