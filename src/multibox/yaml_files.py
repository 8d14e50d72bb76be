"""Reading YAML files safely: every YAML file of the project (run configs, dataset YAMLs, YOLO data
YAMLs) is read by :func:`read_yaml`, and nothing in one can run code, hang or exhaust memory.

* ``yaml.SafeLoader`` only: no Python objects are ever constructed from tags.
* **Alias bombs** ("billion laughs": nine anchors, each a list of nine aliases of the previous one) are
  small to parse but expand to 10^9 nodes in whatever walks the result (``dataclasses.asdict``, JSON,
  deep copies). After composing, the expanded size of the document (every alias counted as the full
  node it stands for) is bounded by :data:`MAX_EXPANDED_NODES`, computed once per distinct node, so the
  check is linear in the file's size. A recursive alias (``&a [*a]``) is refused too.
* **Encoding**: UTF-8 (a BOM is allowed); other bytes (Latin-1) are a one-line error naming the line.
* **Nesting** too deep for the parser is a one-line error, not a RecursionError.

Every problem is a :class:`multibox.errors.UserError` whose message starts with the file's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from multibox.errors import UserError

__all__ = ["MAX_EXPANDED_NODES", "read_yaml", "parse_yaml"]

#: Nodes a YAML document may expand to, aliases counted in full. A dataset YAML with 20k class names is
#: 20k nodes; the smallest "billion laughs" is 10^9.
MAX_EXPANDED_NODES = 1_000_000


class _TooLarge(Exception):
    """Raised while composing; read_yaml turns it into a UserError naming the file."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def expanded_size(root: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> int:
    """Nodes ``root`` stands for with every alias expanded; :class:`_TooLarge` above ``limit`` or on a
    recursive alias. Each distinct node is visited once (its size memoized), so shared subtrees cost
    nothing extra: linear in the composed document."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _TooLarge("a recursive alias (a node that contains itself)")
        active.add(key)
        total = 1
        for child in _children(node):
            total += size(child)
            if total > limit:
                raise _TooLarge(f"aliases expand it to more than {limit:,} nodes (an alias bomb?)")
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents whose alias-expanded size exceeds :data:`MAX_EXPANDED_NODES`."""

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            expanded_size(node)
        return node


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(f"{source}: line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); "
                        "save the file as UTF-8") from None


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document ``text`` (SafeLoader, alias-bounded); errors are UserErrors naming ``source``."""
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 (BoundedLoader is a SafeLoader)
    except _TooLarge as error:
        raise UserError(f"{source}: refused: {error}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" line {mark.line + 1}:" if mark else ""
        raise UserError(f"{source}:{where} malformed YAML ({error.problem or error.context})") from None
    except yaml.YAMLError as error:
        raise UserError(f"{source}: malformed YAML ({str(error).splitlines()[0]})") from None
    except RecursionError:
        raise UserError(f"{source}: refused: nested too deeply to parse") from None


def read_yaml(path: str | Path, mapping: bool = False) -> Any:
    """The YAML document in the file ``path``.

    mapping: the document must be a mapping (an empty file gives ``{}``); anything else at the top level
    is a UserError naming what was found. Unreadable files, other encodings than UTF-8, malformed YAML,
    alias bombs and too-deep nesting are one-line UserErrors starting with ``path``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a YAML file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or type(error).__name__})") from None
    document = parse_yaml(_decode(data, str(path)), str(path))
    if mapping:
        document = {} if document is None else document
        if not isinstance(document, dict):
            raise UserError(f"{path}: expected a mapping (key: value lines) at the top level, got a "
                            f"{type(document).__name__}")
    return document
