"""Host checks (`validate --host`): secrets, TLS files, state_dir, and the steps' own checks."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine import cli
from engine.drillkit.pki import Pki
from engine.hostcheck import host_problems
from engine.policy import Policy, load_policy


def write_policy(tmp_path: Path, *, http: str, engage: str = "- lock: {state: present}",
                 secret_mode: int = 0o600, state_dir: str = "state") -> Policy:
    secret = tmp_path / "tsig.key"
    secret.write_text("key material\n")
    secret.chmod(secret_mode)
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        name: hostcheck
        state_dir: {state_dir}
        secrets:
          tsig: tsig.key
        probes:
          production:
            http: {http}
        monitor: {{target: production, interval: 10m, failures_to_engage: 3}}
        engage:
          {engage}
        restore:
          - lock: {{state: absent}}
        """))
    return load_policy(path)


def tls(pki: Pki, *, cert: Path | None = None, key: Path | None = None,
        ca: Path | None = None) -> str:
    return (f'{{url: "https://127.0.0.1:8443/check", client_cert: "{cert or pki.client.cert}", '
            f'client_key: "{key or pki.client.key}", ca_file: "{ca or pki.ca.cert}"}}')


def test_a_ready_host_has_no_problems(tmp_path: Path, pki: Pki) -> None:
    assert host_problems(write_policy(tmp_path, http=tls(pki))) == []


def test_garbage_certificate_is_named(tmp_path: Path, pki: Pki) -> None:
    bad = tmp_path / "garbage.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    (problem,) = host_problems(write_policy(tmp_path, http=tls(pki, cert=bad)))
    assert problem.startswith(
        f"probes.production.http.client_cert: cannot load {bad} with key {pki.client.key}: ")
    assert problem.endswith("(a PEM certificate and its private key are needed)")


def test_key_that_does_not_match_the_certificate(tmp_path: Path, pki: Pki) -> None:
    (problem,) = host_problems(write_policy(tmp_path, http=tls(pki, key=pki.wrong_client.key)))
    assert problem.startswith("probes.production.http.client_cert: cannot load")
    assert "mismatch" in problem


def test_missing_certificate_file(tmp_path: Path, pki: Pki) -> None:
    missing = tmp_path / "nope.pem"
    (problem,) = host_problems(write_policy(tmp_path, http=tls(pki, cert=missing)))
    assert f"cannot load {missing} with key" in problem
    assert "No such file or directory" in problem


def test_encrypted_key_fails_instead_of_prompting(tmp_path: Path, pki: Pki) -> None:
    encrypted = tmp_path / "encrypted.key"
    key = ec.generate_private_key(ec.SECP256R1())
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    (problem,) = host_problems(write_policy(tmp_path, http=tls(pki, key=encrypted)))
    assert problem.startswith("probes.production.http.client_cert: cannot load")


def test_bad_ca_file(tmp_path: Path, pki: Pki) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("this is not a CA bundle\n")
    (problem,) = host_problems(write_policy(tmp_path, http=tls(pki, ca=bad)))
    assert problem.startswith(f"probes.production.http.ca_file: cannot load {bad}: ")


def test_open_secret_and_bad_state_dir_are_all_reported(tmp_path: Path) -> None:
    (tmp_path / "state-file").write_text("not a directory\n")
    policy = write_policy(tmp_path, http='{url: "http://127.0.0.1/"}', secret_mode=0o640,
                          state_dir="state-file")
    secret = tmp_path / "tsig.key"
    assert host_problems(policy) == [
        f"secrets.tsig: {secret}: mode 0640 lets group or others access a secret "
        f"(chmod 600 {secret})",
        f"state_dir: {tmp_path / 'state-file'} exists but is not a directory",
    ]


def test_state_dir_that_can_be_created_is_fine(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, http='{url: "http://127.0.0.1/"}', state_dir="a/b/c")
    assert not policy.state_dir.exists()
    assert host_problems(policy) == []


def test_step_host_checks_are_asked(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, http='{url: "http://127.0.0.1/"}',
                          engage="- command: {argv: [no-such-program-4e1f, --now]}")
    assert host_problems(policy) == [
        "engage[0] (command): command: program 'no-such-program-4e1f' not found on PATH"
    ]


def test_cli_validate_host(tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "garbage.pem"
    bad.write_text("garbage\n")
    policy = write_policy(tmp_path, http=tls(pki, cert=bad))
    # Without --host the policy itself is fine: CI has no certificates.
    assert cli.main(["--policy", str(policy.path), "validate"]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {policy.path}: policy 'hostcheck'")
    assert cli.main(["--policy", str(policy.path), "validate", "--host"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"{policy.path}: host check: probes.production.http.client_cert: ")
    write_policy(tmp_path, http=tls(pki))
    assert cli.main(["--policy", str(policy.path), "validate", "--host"]) == 0
    assert capsys.readouterr().out == (
        f"OK: {policy.path}: policy 'hostcheck' (1 engage steps, 1 restore steps, 0 jobs); "
        "host checks passed\n")


def test_relay_ca_and_job_directories_are_checked(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be\n")
    (tmp_path / "relay-ca.pem").write_text("not a CA\n")
    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: dirs
        state_dir: state
        notify:
          email: {smtp: {host: 127.0.0.1, starttls: true, ca_file: relay-ca.pem},
                  from: a@b.c, to: [x@y.z]}
        probes:
          production: {tcp: {host: 127.0.0.1, port: 443}}
        monitor: {target: production, interval: 10m, failures_to_engage: 3}
        engage: []
        restore: []
        jobs:
          import:
            status_log: blocker/import.log
            work_dir: blocker/work
            steps: []
        """))
    policy = load_policy(path)
    problems = host_problems(policy)
    assert problems[0].startswith("notify.email.smtp.ca_file: cannot load ")
    assert "relay-ca.pem: " in problems[0]
    assert problems[1:] == [
        f"jobs.import.work_dir: {tmp_path / 'blocker' / 'work'} cannot be created: "
        f"{tmp_path / 'blocker'} is not a directory",
        f"jobs.import.status_log: {tmp_path / 'blocker'} exists but is not a directory",
    ]
