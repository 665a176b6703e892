"""Text from files and servers made safe to print on a terminal: one helper, used by output.

A pause reason, a job's last error or a probe's message come from files anyone with write
access to them chose, or from remote servers. Printed raw, an escape sequence can rewrite
the operator's terminal (hide a line, fake an OK) and a newline can forge a whole line.
`printable(text)` shows every control character as a visible escape instead: `\\n`, `\\t`,
`\\x1b`, and the Unicode direction overrides as `\\u202e`. JSON output needs none of this
(json.dumps escapes control characters itself).
"""
from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Bidirectional overrides and isolates: they reorder what a terminal shows.
_BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E,
                                   0x200F, 0x061C))


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"\\x{code:02x}"
    if char in _BIDI:
        return f"\\u{code:04x}"
    return char


def printable(text: object) -> str:
    """`text` (any value, via str) with control characters shown as escapes, on one line."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(_escape(char) for char in value)


def printable_lines(text: str) -> str:
    """Each line of `text` made printable; the line breaks themselves are kept."""
    return "\n".join(printable(line) for line in text.split("\n"))
