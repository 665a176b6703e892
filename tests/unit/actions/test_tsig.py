"""actions.tsig: BIND key files as tsig-keygen writes them → dnspython keys, weak ones refused."""
from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import dns.tsig
import pytest

from actions import tsig
from engine.errors import StepError

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def key_text(name: str = "failover-key", algorithm: str = "hmac-sha256", secret: str = SECRET
             ) -> str:
    return f'key "{name}" {{\n\talgorithm {algorithm};\n\tsecret "{secret}";\n}};\n'


def test_parses_a_key_file_into_a_dnspython_key(tmp_path: Path) -> None:
    key = tsig.load_key(write(tmp_path / "k", key_text()))
    assert key.name.to_text() == "failover-key."
    assert key.algorithm == dns.tsig.HMAC_SHA256
    assert key.secret == b"0123456789abcdef0123456789abcdef"


def test_reads_what_tsig_keygen_writes(tmp_path: Path) -> None:
    keygen = shutil.which("tsig-keygen", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if keygen is None:
        pytest.skip("tsig-keygen (bind9) not installed")
    out = subprocess.run(
        [keygen, "-a", "hmac-sha512", "gen-key"], capture_output=True, text=True, check=True
    )
    key = tsig.load_key(write(tmp_path / "k", out.stdout))
    assert key.name.to_text() == "gen-key."
    assert key.algorithm == dns.tsig.HMAC_SHA512
    assert len(key.secret) == 64


def test_comments_and_unquoted_names_are_accepted(tmp_path: Path) -> None:
    text = (
        "# made by hand\n/* block\n comment */\nkey k2 { // the name\n"
        f' algorithm HMAC-SHA384; secret "{SECRET}"; }};\n'
    )
    key = tsig.load_key(write(tmp_path / "k", text))
    assert key.name.to_text() == "k2."
    assert key.algorithm == dns.tsig.HMAC_SHA384


@pytest.mark.parametrize("algorithm", ["hmac-md5", "hmac-sha1", "hmac-sha224"])
def test_weak_algorithms_are_refused_unless_allowed(tmp_path: Path, algorithm: str) -> None:
    path = write(tmp_path / "k", key_text(algorithm=algorithm))
    with pytest.raises(StepError, match=f"{algorithm} is weaker than hmac-sha256") as err:
        tsig.load_key(path)
    assert not err.value.retryable
    assert str(path) in str(err.value)
    key = tsig.load_key(path, allow_weak_algorithm=True)
    assert tsig.algorithm_label(key) == algorithm


def test_unknown_algorithm(tmp_path: Path) -> None:
    with pytest.raises(StepError, match="unknown algorithm 'gss-tsig'"):
        tsig.load_key(write(tmp_path / "k", key_text(algorithm="gss-tsig")))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no key clause"),
        (key_text() + key_text("second"), "2 key clauses"),
        ('key "k" { secret "' + SECRET + '"; };', "has no algorithm"),
        ('key "k" { algorithm hmac-sha256; };', "has no secret"),
        (key_text(secret="not base64!!"), "not base64"),
    ],
)
def test_malformed_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "k", text)
    with pytest.raises(StepError, match=message) as err:
        tsig.load_key(path)
    assert str(path) in str(err.value)
    assert SECRET not in str(err.value)


def test_a_file_open_to_others_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "k", key_text(), mode=0o644)
    with pytest.raises(StepError, match=r"mode 0644.*chmod 600"):
        tsig.load_key(path)
    write(path, key_text(), mode=0o400)
    assert tsig.load_key(path).algorithm == dns.tsig.HMAC_SHA256


def test_a_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(StepError, match=r"TSIG key file: .*absent: secret file does not exist"):
        tsig.load_key(tmp_path / "absent")


def test_repr_hides_the_secret(tmp_path: Path) -> None:
    parsed = tsig.parse_key_file(write(tmp_path / "k", key_text()))
    assert SECRET not in repr(parsed) and "hidden" in repr(parsed)


def test_a_secret_holding_slashes_is_not_a_comment(tmp_path: Path) -> None:
    # base64 secrets may contain "//" (and "/*" can never appear in them, nor "#")
    secret = base64.b64encode(b"\xff\xff\xff" * 11).decode()
    assert "//" in secret
    text = f'key "k" {{ algorithm hmac-sha256; secret "{secret}"; }}; // trailing /* note */'
    key = tsig.load_key(write(tmp_path / "k", text))
    assert key.secret == b"\xff\xff\xff" * 11


def test_a_huge_key_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    """Issue 10 case 5: a 3 GB TSIG key file gave MemoryError. A sparse file of that size
    (0600, so the secret check passes) is refused by its size, naming the file."""
    path = write(tmp_path / "huge.key", key_text())
    with path.open("r+b") as handle:
        handle.truncate(3 * 1024**3)
    with pytest.raises(StepError, match=r"huge.key: is 3072.0 MiB; at most 64 KiB is read"):
        tsig.load_key(path)


def test_a_key_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(StepError, match="not a regular file"):
        tsig.parse_key_file(fifo)  # the reader itself refuses it, without blocking
    with pytest.raises(StepError, match="character device, not a regular file"):
        tsig.parse_key_file("/dev/zero")
