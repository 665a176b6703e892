"""Read a TSIG key from a BIND key file, as `tsig-keygen` writes it.

    key "failover-key" {
            algorithm hmac-sha256;
            secret "q3Jq...=";
    };

`load_key(path)` returns a `dns.tsig.Key` ready for dnspython. It refuses a file that
group or others can read (whoever holds the key can repoint the alias), a file with no
key or several keys, and algorithms weaker than HMAC-SHA256 unless the step says
`allow_weak_algorithm: true`. Errors are `StepError`s naming the file, never the secret.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.tsig

from engine.errors import StepError
from engine.safefile import FileRefused, read_limited
from engine.secrets import require_secret_file

# BIND algorithm names → dnspython's; the first three are accepted by default.
STRONG = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
WEAK = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
}

# Quoted strings come first so that a base64 secret holding "//" is not taken for a comment.
_COMMENTS = re.compile(r'"[^"]*"|/\*.*?\*/|//[^\n]*|#[^\n]*', re.S)
_KEY = re.compile(r'\bkey\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.S)
_ALGORITHM = re.compile(r"\balgorithm\s+\"?([A-Za-z0-9.-]+)\"?\s*;")
_SECRET = re.compile(r'\bsecret\s+"([^"]*)"\s*;')


@dataclass(frozen=True)
class KeyFile:
    """What a key file holds: the key's name, BIND algorithm name and decoded secret."""

    name: str
    algorithm: str
    secret: bytes

    def __repr__(self) -> str:  # never let the secret reach a log through a repr
        return f"KeyFile(name={self.name!r}, algorithm={self.algorithm!r}, secret=<hidden>)"


def _without_path(message: str, path: Path) -> str:
    """`read_limited`'s line without the words "TSIG key file PATH" it starts with."""
    return message.replace(f"TSIG key file {path} ", "", 1)


def _keep_strings(match: re.Match[str]) -> str:
    return match.group(0) if match.group(0).startswith('"') else " "


def parse_key_file(path: str | Path) -> KeyFile:
    """Parse the one `key` clause of a BIND key file; raise StepError naming the file."""
    path = Path(path)
    try:
        # A regular file of at most 64 KiB: a FIFO, /dev/zero or a 3 GB file is refused.
        text = read_limited(path, "tsig_key").decode("utf-8")
    except FileRefused as exc:
        raise StepError(f"TSIG key file {path}: {_without_path(str(exc), path)}") from None
    except UnicodeDecodeError:
        raise StepError(f"TSIG key file {path}: not a text file; use tsig-keygen") from None
    clauses = _KEY.findall(_COMMENTS.sub(_keep_strings, text))
    if len(clauses) != 1:
        found = "no key clause" if not clauses else f"{len(clauses)} key clauses"
        raise StepError(
            f"TSIG key file {path}: {found}; expected one"
            ' `key "NAME" { algorithm ...; secret "..."; };` as tsig-keygen writes it'
        )
    name, body = clauses[0]
    algorithm = _ALGORITHM.search(body)
    secret = _SECRET.search(body)
    if not algorithm or not secret:
        missing = "algorithm" if not algorithm else "secret"
        raise StepError(f"TSIG key file {path}: key {name!r} has no {missing}")
    try:
        decoded = base64.b64decode(secret.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise StepError(f"TSIG key file {path}: the secret of key {name!r} is not base64") from None
    if not decoded:
        raise StepError(f"TSIG key file {path}: the secret of key {name!r} is empty")
    return KeyFile(name=name, algorithm=algorithm.group(1).lower(), secret=decoded)


def check_mode(path: str | Path) -> None:
    """Refuse a key file that group or others may read or write (mode must be 0600 or 0400)."""
    require_secret_file(path, "TSIG key file:")


def load_key(path: str | Path, *, allow_weak_algorithm: bool = False) -> dns.tsig.Key:
    """A dnspython TSIG key from a BIND key file, after checking its mode and algorithm."""
    check_mode(path)
    parsed = parse_key_file(path)
    if parsed.algorithm in STRONG:
        algorithm = STRONG[parsed.algorithm]
    elif parsed.algorithm in WEAK:
        if not allow_weak_algorithm:
            raise StepError(
                f"TSIG key file {path}: algorithm {parsed.algorithm} is weaker than hmac-sha256;"
                " make a new key with `tsig-keygen -a hmac-sha256`"
                " (or set allow_weak_algorithm: true)"
            )
        algorithm = WEAK[parsed.algorithm]
    else:
        known = ", ".join([*STRONG, *WEAK])
        raise StepError(
            f"TSIG key file {path}: unknown algorithm {parsed.algorithm!r} (known: {known})"
        )
    try:
        name = dns.name.from_text(parsed.name)
    except dns.exception.DNSException:
        raise StepError(f"TSIG key file {path}: {parsed.name!r} is not a valid key name") from None
    return dns.tsig.Key(name, parsed.secret, algorithm)


def algorithm_label(key: dns.tsig.Key) -> str:
    """The BIND spelling of a key's algorithm, for messages (`hmac-sha256`)."""
    for table in (STRONG, WEAK):
        for label, name in table.items():
            if name == key.algorithm:
                return label
    return key.algorithm.to_text()
