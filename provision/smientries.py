"""A reading's entries as both forms give them: nvidia-smi's ``-q`` text and ``-q -x`` XML parse into the same
tree of :class:`Node` (keys normalised so a text label and an XML tag NVIDIA named alike meet), which
:mod:`provision.smigpu` and :mod:`provision.smireading` turn into a snapshot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: what nvidia-smi prints for a value NVML did not give (NOT_SUPPORTED and friends) → the probe's reason
NOT_GIVEN = {
    "n/a": "not_supported",
    "[n/a]": "not_supported",
    "not supported": "not_supported",
    "[not supported]": "not_supported",
    "requested functionality has been deprecated": "not_supported",
    "insufficient permissions": "no_permission",
    "[insufficient permissions]": "no_permission",
    "no permission": "no_permission",
    "[no permission]": "no_permission",
}

#: a PCI bus id as nvidia-smi prints it (domain of 4 or 8 hex digits)
BUS_ID = r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]"


@dataclass
class Node:
    """One entry of a reading: its value (None for a section) and the entries under it, by key.

    Keys are normalised: lower case, words joined by ``_`` ("Max Power Limit" → ``max_power_limit``), so
    the text form's labels and the XML form's tags meet where NVIDIA named them alike."""

    value: str | None = None
    children: dict[str, Node] = field(default_factory=dict)

    def get(self, *path: str) -> Node | None:
        node: Node | None = self
        for key in path:
            if node is None:
                return None
            node = node.children.get(key)
        return node

    def text(self, *paths: tuple[str, ...]) -> tuple[str | None, str | None]:
        """The value at the first of ``paths`` present: (value, the path it came from as a/b/c)."""
        for path in paths:
            node = self.get(*path)
            if node is not None and node.value is not None:
                return node.value, "/".join(path)
        return None, None


@dataclass
class ParsedLog:
    """One reading, parsed: the entries above the GPUs and each GPU's (its bus id or XML id, its entries)."""

    top: Node
    gpus: list[tuple[str, Node]]
    #: "nvidia-smi -q" or "nvidia-smi -q -x"
    form: str
    #: the XML schema named by its DOCTYPE (v11, v12, v13), None for text or when there was none
    schema: str | None
    warnings: list[str]


def entry_key(label: str) -> str:
    """A label or tag as a key: lower case, words joined by ``_`` ("Max Power Limit" → ``max_power_limit``)."""
    return "_".join(re.sub(r"[^a-z0-9]+", " ", label.lower()).split())


def value_and_reason(value: str | None) -> tuple[str | None, str | None]:
    """(value, None) for a real value; (None, reason) for N/A and friends; (None, None) when absent."""
    if value is None:
        return None, None
    v = value.strip()
    reason = NOT_GIVEN.get(v.lower())
    if reason is not None:
        return None, reason
    if not v:
        return None, "not_supported"
    return v, None
