"""http and tcp probes against a real HTTPS server on loopback that demands a client certificate."""
from __future__ import annotations

import socket

from actions.probes import HttpProbe, TcpProbe
from actions.registry import probe_class
from engine.drillkit.https import HttpsServer
from engine.drillkit.pki import Pki
from tests.support import LOOPBACK, free_port


def _probe(server: HttpsServer, pki: Pki, **params: object) -> HttpProbe:
    base: dict[str, object] = {
        "url": server.url("/check"),
        "timeout": "5s",
        "ca_file": str(pki.ca.cert),
        "client_cert": str(pki.client.cert),
        "client_key": str(pki.client.key),
    }
    base.update(params)
    return HttpProbe({k: v for k, v in base.items() if v is not None})


def test_registry_names_the_probe_classes() -> None:
    assert probe_class("http") is HttpProbe
    assert probe_class("tcp") is TcpProbe


def test_right_client_cert_is_ok(https_server: HttpsServer, pki: Pki) -> None:
    result = _probe(https_server, pki).check()
    assert result.ok, result.detail
    assert result.detail == "HTTP 200"
    assert result.latency >= 0
    assert https_server.requests[-1].client_cn == "standby.drill"


def test_no_client_cert_fails(https_server: HttpsServer, pki: Pki) -> None:
    # With TLS 1.3 the server's verdict arrives as an alert or as a bare EOF, at random:
    # either way the detail names the client certificate, never "EOF occurred …".
    for _ in range(10):
        result = _probe(https_server, pki, client_cert=None, client_key=None).check()
        assert not result.ok
        assert result.detail.startswith("TLS: the server requires a client certificate"), \
            result.detail
    assert https_server.requests == []


def test_client_cert_from_another_ca_is_refused(https_server: HttpsServer, pki: Pki) -> None:
    for _ in range(10):
        result = _probe(https_server, pki, client_cert=str(pki.wrong_client.cert),
                        client_key=str(pki.wrong_client.key)).check()
        assert not result.ok
        assert result.detail.startswith("TLS: the server rejected our client certificate"), \
            result.detail
    assert https_server.requests == []


def test_a_guard_counts_any_answer_as_reachable(http_server: HttpsServer, pki: Pki) -> None:
    http_server.set_route("/", 301, "moved")
    guard = HttpProbe({"url": http_server.url("/")}, guard=True)
    assert guard.check().ok and guard.check().detail == "HTTP 301 (reachable)"
    target = HttpProbe({"url": http_server.url("/")})
    assert not target.check().ok and target.check().detail == "HTTP 301 (expected 200)"
    asked = HttpProbe({"url": http_server.url("/"), "expect_status": 200}, guard=True)
    assert asked.check().detail == "HTTP 301 (expected 200)"  # the policy asked for a status


def test_a_guard_counts_a_completed_handshake_as_reachable(https_server: HttpsServer,
                                                           pki: Pki) -> None:
    # The server demands a client certificate the guard does not have: no HTTP answer,
    # but the TLS handshake completed, so the network works.
    guard = HttpProbe({"url": https_server.url("/"), "ca_file": str(pki.ca.cert)}, guard=True)
    result = guard.check()
    assert result.ok and result.detail.startswith("TLS handshake completed"), result.detail


def test_cannot_run_names_a_missing_or_expired_certificate(pki: Pki, tmp_path) -> None:
    probe = HttpProbe({"url": "https://127.0.0.1:9/", "client_cert": str(tmp_path / "gone.pem"),
                       "client_key": str(pki.client.key)})
    assert "gone.pem" in (probe.cannot_run() or "")
    good = HttpProbe({"url": "https://127.0.0.1:9/", "client_cert": str(pki.client.cert),
                      "client_key": str(pki.client.key)})
    assert good.cannot_run() is None
    assert good.certificate_not_after() is not None


def test_wrong_ca_fails_with_verify_true(https_server: HttpsServer, pki: Pki) -> None:
    result = _probe(https_server, pki, ca_file=str(pki.wrong_ca.cert)).check()
    assert not result.ok
    assert result.detail.startswith("TLS: certificate verify failed"), result.detail


def test_verify_defaults_to_true_without_ca_file(self_signed_server: HttpsServer) -> None:
    result = HttpProbe({"url": self_signed_server.url("/"), "timeout": "5s"}).check()
    assert not result.ok
    assert "certificate verify failed" in result.detail


def test_verify_false_accepts_a_self_signed_server(self_signed_server: HttpsServer) -> None:
    result = HttpProbe({"url": self_signed_server.url("/"), "timeout": "5s",
                        "verify": False}).check()
    assert result.ok, result.detail


def test_verify_false_with_client_cert_reaches_production(https_server: HttpsServer,
                                                          pki: Pki) -> None:
    # The original GOCDB probe: client certificate presented, server certificate not checked.
    result = _probe(https_server, pki, ca_file=str(pki.wrong_ca.cert), verify=False).check()
    assert result.ok, result.detail


def test_expect_body(https_server: HttpsServer, pki: Pki) -> None:
    assert _probe(https_server, pki, expect_body="all good").check().ok
    result = _probe(https_server, pki, expect_body="GOCDB is up").check()
    assert not result.ok
    assert result.detail == "HTTP 200 but the body does not contain 'GOCDB is up'"


def test_unexpected_status(https_server: HttpsServer, pki: Pki) -> None:
    https_server.set_route("/check", 503, "maintenance")
    result = _probe(https_server, pki).check()
    assert not result.ok
    assert result.detail == "HTTP 503 (expected 200)"
    assert _probe(https_server, pki, expect_status=503).check().ok


def test_server_stopped_then_back(https_server: HttpsServer, pki: Pki) -> None:
    probe = _probe(https_server, pki)
    https_server.stop()
    result = probe.check()
    assert not result.ok
    assert result.detail == f"connection refused by {LOOPBACK}:{https_server.port}"
    https_server.start()
    assert probe.check().ok


def test_silent_server_times_out(pki: Pki) -> None:
    # A listener that accepts (backlog) but never answers: the TLS handshake cannot finish.
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        result = HttpProbe({"url": f"https://{LOOPBACK}:{port}/", "timeout": "300ms"}).check()
    assert not result.ok
    assert result.detail == "TLS handshake timeout after 300ms"


def test_plain_http_and_missing_cert_files(http_server: HttpsServer, tmp_path) -> None:
    assert HttpProbe({"url": http_server.url("/"), "timeout": "5s"}).check().ok
    probe = HttpProbe({"url": "https://127.0.0.1:1/", "client_cert": str(tmp_path / "nope.pem"),
                       "client_key": str(tmp_path / "nope.key")})
    result = probe.check()
    assert not result.ok
    assert result.detail.startswith("cannot load TLS files (client_cert ")
    (problem,) = probe.host_problems()
    assert problem.startswith(f"client_cert: cannot load {tmp_path / 'nope.pem'} with key ")
    assert "No such file or directory" in problem


def test_host_problems_empty_for_good_files(https_server: HttpsServer, pki: Pki) -> None:
    assert _probe(https_server, pki).host_problems() == []


def test_tcp_probe(https_server: HttpsServer) -> None:
    probe = TcpProbe({"host": LOOPBACK, "port": https_server.port, "timeout": "2s"})
    assert probe.check().ok
    port = free_port()
    result = TcpProbe({"host": LOOPBACK, "port": port, "timeout": "2s"}).check()
    assert not result.ok
    assert result.detail == f"connection refused by {LOOPBACK}:{port}"


def test_encrypted_key_fails_without_prompting(pki: Pki, tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"pw")))
    probe = HttpProbe({"url": "https://127.0.0.1:1/", "client_cert": str(pki.client.cert),
                       "client_key": str(encrypted)})
    result = probe.check()
    assert not result.ok
    assert result.detail.endswith("not valid PEM, or the key is encrypted (it must not be)")


def test_trickling_server_is_cut_off_at_the_timeout() -> None:
    # A server that answers the headers, then sends one body byte at a time and never ends.
    import threading

    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
                while not stop.is_set():
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        return
                    stop.wait(0.05)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        result = HttpProbe({"url": f"http://{LOOPBACK}:{port}/", "timeout": "500ms",
                            "expect_body": "OK"}).check()
        stop.set()
        thread.join(5)
    assert not result.ok
    assert result.detail == "no response within 500ms"


def test_tls_context_is_reused_until_a_certificate_file_changes(https_server, pki, tmp_path):
    import shutil

    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    shutil.copy(pki.client.cert, cert)
    shutil.copy(pki.client.key, key)
    probe = HttpProbe({"url": https_server.url("/check"), "client_cert": str(cert),
                       "client_key": str(key), "ca_file": str(pki.ca.cert), "timeout": "2s"})
    assert probe.check().ok
    first = probe._context()
    assert probe._context() is first
    # A renewed certificate from another CA: picked up at the next check, which now fails.
    shutil.copy(pki.wrong_client.cert, cert)
    shutil.copy(pki.wrong_client.key, key)
    result = probe.check()
    assert probe._context() is not first
    assert not result.ok


def test_an_expired_client_certificate_cannot_run(tmp_path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=30))
            .not_valid_after(now - dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    probe = HttpProbe({"url": "https://127.0.0.1:9/", "client_cert": str(tmp_path / "c.pem"),
                       "client_key": str(tmp_path / "k.pem")})
    reason = probe.cannot_run() or ""
    assert reason.startswith(f"the client certificate {tmp_path / 'c.pem'} expired on "), reason
