"""Safe YAML loading that remembers where every value came from.

`read_yaml(path)` returns a `Source`: the plain data (dicts, lists, scalars) plus a map
from each value's path, e.g. ``("engage", 3, "lock", "state")``, to its 1-based line and
column, so that schema errors can be reported as ``FILE:LINE:COL: engage[3].lock.state: …``.

Every bad input raises `PolicyError` with one line naming the file and what to do:

- a missing file, a directory or other non-regular file, a file over 1 MiB;
- binary content (a NUL byte, or bytes that are not UTF-8);
- an empty file (or only comments), a YAML syntax error (with its line:col),
  several documents in one file;
- a duplicate key in one mapping (YAML would silently keep the last one);
- alias expansion beyond a small budget ("billion laughs"), recursive aliases,
  nesting deeper than `MAX_DEPTH`;
- tags other than the standard safe ones (no ``!!python/object`` and friends).

Aliases and merge keys are allowed for ordinary use::

    defaults: &dns {server: 127.0.0.1, zone: example.org., key: tsig}
    engage:
      - nsupdate: {<<: *dns, name: www.example.org., set: standby.example.org.}

The tree is composed with PyYAML's safe loader (libyaml when present; the composer shares the
nodes of an alias, so composing is cheap even for alias bombs) and then built here,
node by node, counting every node built against a budget.
"""
from __future__ import annotations

import math
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.errors import PolicyError

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_INT = 2**63 - 1
# Nodes an alias may re-use beyond those written in the file: enough for any sane use of
# anchors and merge keys, far too few for an exponential alias bomb.
ALIAS_BUDGET = 10_000

PathKey = tuple[str | int, ...]
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
# libyaml is much faster and caps nesting depth itself; the pure-Python loader is the fallback.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Texts that may nest deeper than this are parsed by the pure-Python loader.
_C_LOADER_DEPTH = 400
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


@dataclass
class Source:
    """Parsed YAML with positions: `marks[path]` is the value's (line, col), `key_marks[path]`
    the position of the key that introduced it (both 1-based)."""

    path: Path
    data: Any
    marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: PathKey, *, key: bool = False) -> tuple[int, int]:
        """The line and column of `path` (of its key if `key`), else of its nearest ancestor."""
        path = tuple(path)
        if key and path in self.key_marks:
            return self.key_marks[path]
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), (1, 1))


def dotted(path: PathKey) -> str:
    """``("engage", 3, "lock")`` → ``engage[3].lock``; the empty path is ``(top level)``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _PLAIN_KEY.match(str(part)):  # spaces, dots, newlines: quote it
            text += f"[{str(part)!r}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def read_yaml(path: str | Path) -> Source:
    """Read and parse a YAML file safely; raise PolicyError with one clear line when it is bad."""
    path = Path(path)
    text = _read_text(path)
    try:
        # libyaml recurses in C: only some builds cap the depth, and a deep enough file
        # crashes the others. Text that might nest deeply goes to the pure-Python loader,
        # which fails with RecursionError instead.
        loader = _LOADER if _nesting_bound(text) <= _C_LOADER_DEPTH else yaml.SafeLoader
        root = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        raise PolicyError([_yaml_error_line(path, exc)]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([f"{path}: YAML error: {_one_line(str(exc))}"]) from None
    except RecursionError:
        raise PolicyError(
            [f"{path}: nesting is too deep to parse; a policy nests a few levels only"]
        ) from None
    if root is None:
        raise PolicyError(
            [f"{path}: the file holds no YAML document (only comments or blank lines); "
             "a policy is a mapping starting with `version: 1`"]
        )
    if isinstance(root, MappingNode) and not any(
            isinstance(key, ScalarNode) and key.value == "version" for key, _ in root.value):
        # Not a policy at all (--policy /etc/shadow): one line, and none of its keys or
        # values, which are the file's content.
        raise PolicyError(
            [f"{path}: not a failover-engine policy (no `version: 1` at the top level); "
             "is this the right file? (a policy starts with `version: 1`)"]
        )
    source = Source(path=path, data=None)
    builder = _Builder(path, source, _count_nodes(root))
    source.data = builder.build(root, (), 0)
    return source


def _read_text(path: Path) -> str:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise PolicyError([f"{path}: no such file (give the policy with --policy FILE)"]) from None
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror}"]) from None
    if stat.S_ISDIR(info.st_mode):
        raise PolicyError([f"{path}: is a directory, not a policy file (name the .yaml file)"])
    if not stat.S_ISREG(info.st_mode):
        raise PolicyError([f"{path}: is not a regular file (name the policy's .yaml file)"])
    try:
        with path.open("rb") as handle:
            # Read one byte more than allowed: the size can change between stat and read.
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror}"]) from None
    if len(raw) > MAX_BYTES:
        size = max(info.st_size, len(raw))
        raise PolicyError(
            [f"{path}: the file is {size / MAX_BYTES:.1f} MiB; a policy is at most 1 MiB "
             "(is this the right file?)"]
        )
    nul = raw.find(b"\0")
    if nul >= 0:
        raise PolicyError(
            [f"{path}: binary file (NUL byte at offset {nul}); a policy is UTF-8 YAML text"]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            [f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
             "save the policy as UTF-8"]
        ) from None
    if not text.strip():
        raise PolicyError(
            [f"{path}: empty file; a policy is a YAML mapping starting with `version: 1`"]
        )
    return text


def _nesting_bound(text: str) -> int:
    """An upper bound of the YAML nesting depth of `text`, cheap to compute.

    Flow depth counts every bracket, even inside quotes; block depth counts indentation
    plus every `-`, `:` and `?` of a line. Over-estimating only costs speed.
    """
    flow = deepest = 0
    for char in text:
        if char in "[{":
            flow += 1
            deepest = max(deepest, flow)
        elif char in "]}" and flow:
            flow -= 1
    block = 0
    for line in text.splitlines():
        stripped = line.lstrip()
        markers = stripped.count("-") + stripped.count(":") + stripped.count("?")
        block = max(block, len(line) - len(stripped) + markers)
    return deepest + block


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _yaml_error_line(path: Path, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = _one_line(exc.problem or "")
    if "another document" in problem:
        return f"{where}: a second YAML document (`---`); a policy is one document per file"
    context = _one_line(exc.context or "")
    if context and exc.context_mark is not None and exc.context_mark is not mark:
        context += f" at line {exc.context_mark.line + 1}"
    if "undefined alias" in problem:
        problem += " (an `*alias` must come after its `&anchor`)"
    detail = f"{problem} ({context})" if context and problem else problem or context
    return f"{where}: YAML syntax error: {detail or 'cannot parse'}"


def _count_nodes(root: Node) -> int:
    """Distinct nodes in the composed graph (an alias re-uses its anchor's node)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return len(seen)


class _Builder:
    """Builds plain data from nodes: records positions, refuses duplicates and alias bombs."""

    def __init__(self, path: Path, source: Source, distinct: int) -> None:
        self.path = path
        self.source = source
        self.budget = distinct + ALIAS_BUDGET
        self.built = 0
        self.active: set[int] = set()
        self.scalars = SafeConstructor()

    def fail(self, node: Node, message: str) -> PolicyError:
        mark = node.start_mark
        return PolicyError([f"{self.path}:{mark.line + 1}:{mark.column + 1}: {message}"])

    def build(self, node: Node, path: PathKey, depth: int) -> Any:
        self.built += 1
        if self.built > self.budget:
            raise self.fail(
                node,
                f"aliases expand to more than {ALIAS_BUDGET} extra values (an alias bomb?); "
                "write the values out or use fewer nested aliases",
            )
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels; flatten the policy")
        if id(node) in self.active:
            raise self.fail(node, "an alias refers to a value that contains it (recursive alias)")
        self.source.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    raise self.fail(node, f"unsupported YAML tag {node.tag!r} on a list")
                items = enumerate(node.value)
                return [self.build(item, (*path, i), depth + 1) for i, item in items]
            if node.tag != _MAP_TAG or not isinstance(node, MappingNode):
                raise self.fail(node, f"unsupported YAML tag {node.tag!r} on a mapping")
            return self.mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: ScalarNode, path: PathKey | None = None) -> Any:
        where = f"{dotted(path)}: " if path else ""
        try:
            value = self.scalars.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            raise self.fail(node, _one_line(exc.problem or str(exc))) from None
        except ValueError as exc:  # e.g. a timestamp with an impossible date
            raise self.fail(node, f"bad value {_short(node.value)}: {exc}") from None
        # Values no option can use, refused wherever they appear: they would pass a schema
        # (NaN compares false with every bound) and break the engine later.
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(node, f"{where}{_short(node.value)} is not a finite number; a policy "
                                  "has no use for NaN or infinity (write a number or e.g. 30s)")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise self.fail(node, f"{where}the number {_short(node.value)} is too large "
                                  f"(at most {MAX_INT})")
        if isinstance(value, str) and "\0" in value:
            raise self.fail(node, f"{where}a NUL character (\\0) in a value; "
                                  "no option can hold one")
        return value

    def key(self, node: Node) -> str:
        if not isinstance(node, ScalarNode):
            raise self.fail(node, "a key must be a plain name, not a list or mapping")
        value = self.scalar(node)
        # Keys are names in this format: `1:` or `yes:` mean the text written, not 1 or True.
        return value if isinstance(value, str) else str(node.value)

    def mapping(self, node: MappingNode, path: PathKey, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = self.key(key_node)
            if key in result:
                first = self.source.key_marks.get((*path, key), (0, 0))[0]
                raise self.fail(
                    key_node,
                    f"duplicate key {key!r} (first at line {first}); YAML would silently keep "
                    "only the last one, so remove one of them",
                )
            mark = key_node.start_mark
            self.source.key_marks.setdefault((*path, key), (mark.line + 1, mark.column + 1))
            result[key] = self.build(value_node, (*path, key), depth + 1)
        # Merged after the explicit keys: explicit keys win (YAML merge-key semantics), and
        # positions already recorded for explicit keys are kept (marks use setdefault).
        for merge in merges:
            for key, value in self.merge_sources(merge, path, depth):
                result.setdefault(key, value)
        return result

    def merge_sources(self, node: Node, path: PathKey, depth: int) -> list[tuple[Any, Any]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        pairs: list[tuple[Any, Any]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                raise self.fail(source, "`<<` (merge) needs a mapping or a list of mappings")
            value = self.build(source, path, depth + 1)
            pairs.extend(value.items())
        return pairs
