"""The alias-expansion bound of a YAML document read the whole way (``yamlfile``): an alias
bomb (the billion laughs, 1 KB) is refused before anything is built, by counting the
values its aliases expand it to, once per node.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_YAML_EXPANDED_NODES = 100_000_000
"""How many values a YAML document may hold once its aliases are expanded. A million jobs that
each merge a shared defaults anchor come to some 20 million; the billion laughs (1 KB) to 435
million, and merge keys really copy what they merge. Counted before anything is built."""
_ANCHOR = re.compile(r"(?:^|[\s\[{,])&[^\s\[\]{},]", re.MULTILINE)
"""Something that may be a YAML anchor; without one a document has no aliases to expand."""
BOMB = (
    f"its aliases expand it to over {MAX_YAML_EXPANDED_NODES:,} values; refused as an alias "
    "bomb (a manifest of a million jobs that share an anchor is far below that)"
)
_SCALAR, _MAPPING = yaml.ScalarNode, yaml.MappingNode


class Endless(Exception):
    """A node that contains itself through an alias (``&a [*a]``)."""

    def __init__(self, node: yaml.Node):
        self.node = node


def expanded_size(root: yaml.Node, limit: int) -> int:
    """How many nodes the document holds once every alias is expanded, capped at ``limit + 1``.

    Each node's size is computed once (by identity, which is what an alias shares), so this is
    linear in the composed document even when its expansion is astronomical; scalars count 1
    and are never looked up (a 100k-job manifest with a shared anchor: 0.2 s). Raises
    ``Endless`` for a node that contains itself: expanding it would never end.
    """
    sizes: dict[int, int] = {}  # id(collection node) -> expanded size
    on_path: set[int] = set()
    stack: list[Any] = [root]  # a node to open, or (node, kids, width) to close
    while stack:
        item = stack.pop()
        if item.__class__ is tuple:
            node, kids, width = item
            on_path.discard(id(node))
            total = 1 + width - len(kids) + sum([sizes[id(c)] for c in kids])
            sizes[id(node)] = min(total, limit + 1)
            continue
        key = id(item)
        if key in sizes or item.__class__ is _SCALAR:
            continue
        if key in on_path:
            raise Endless(item)
        value = item.value
        flat = [n for pair in value for n in pair] if item.__class__ is _MAPPING else value
        kids = [c for c in flat if c.__class__ is not _SCALAR]
        pending = [c for c in kids if id(c) not in sizes]
        if not pending:  # the common case: scalars and nodes already counted
            total = 1 + len(flat) - len(kids) + sum([sizes[id(c)] for c in kids])
            sizes[key] = min(total, limit + 1)
            continue
        on_path.add(key)
        stack.append((item, kids, len(flat)))
        stack += pending
    return sizes.get(id(root), 1)


def is_bomb(root: yaml.Node, text: str) -> bool:
    """Whether the aliases expand the document past ``MAX_YAML_EXPANDED_NODES``; documents
    without anything like an anchor (most) are not walked at all."""
    if "&" not in text or not _ANCHOR.search(text):
        return False
    return expanded_size(root, MAX_YAML_EXPANDED_NODES) > MAX_YAML_EXPANDED_NODES


def anchor_before(text: str, node: yaml.Node) -> str | None:
    """The anchor of ``node``, for messages (nodes do not keep it): where the node starts (the
    C parser) or just before (the Python one)."""
    mark = node.start_mark
    lines = text.splitlines(keepends=True)
    if at := re.match(r"&([^\s\[\]{},]+)", lines[mark.line][mark.column :]):
        return at[1]
    before = "".join(lines[max(0, mark.line - 2) : mark.line]) + lines[mark.line][: mark.column]
    found = re.findall(r"&([^\s\[\]{},]+)", before)
    return found[-1] if found else None
