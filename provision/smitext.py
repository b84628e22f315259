"""The text form of a reading, ``nvidia-smi -q``: indented "Label : value" lines under one heading per GPU,
parsed line by line with plain string operations (linear in the reading), as far as the reading goes."""

from __future__ import annotations

import re

from provision.errors import SnapshotError
from provision.smientries import BUS_ID, Node, ParsedLog, entry_key

_GPU_HEADER = re.compile(rf"^GPU ({BUS_ID})\s*$")
#: no line of a reading is longer (labels pad to column 55, values are short): longer ones end it
_MAX_LINE = 1024


def _is_start(line: str) -> bool:
    return "NVSMI LOG" in line or (line.strip(" \t").startswith("Attached GPUs") and ":" in line)


def _parse_line(line: str) -> tuple[int, str, str | None] | None:
    """(indent, label, value) of "  Label   : value", (indent, label, None) of an indented section heading,
    None for anything else (a prompt, a fence, a sentence). Plain string operations: linear in the line."""
    if len(line) > _MAX_LINE:
        return None
    body = line.lstrip(" ")
    indent = len(line) - len(body)
    if not body or body[0] in ":\t":
        return None
    label, colon, value = body.partition(":")
    if colon:
        if value and not value.startswith(" "):  # "user@host:~$", "http://": not a reading's line
            return None
        return indent, label.rstrip(), value.strip()
    if indent > 0 and body[0].isalpha():
        return indent, body.rstrip(), None
    return None


def parse_text(text: str) -> ParsedLog:
    """An ``nvidia-smi -q`` reading (with or without text around it, whole or cut off), parsed."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = next(
        (i for i, line in enumerate(lines) if _is_start(line)),
        None,
    )
    if start is None:
        raise SnapshotError("not an nvidia-smi -q reading: no 'NVSMI LOG' or 'Attached GPUs' line")
    warnings: list[str] = []
    if any(line.strip() for line in lines[:start]):
        warnings.append(f"{start} line(s) before the reading ignored")
    top = Node()
    gpus: list[tuple[str, Node]] = []
    #: (indent, node) of the open sections; the bottom one is the current GPU or the top level
    stack: list[tuple[int, Node]] = [(-1, top)]
    ended_at: int | None = None
    for n, raw in enumerate(lines[start:], start=start):
        line = raw.rstrip()
        if not line.strip() or "NVSMI LOG" in line:
            continue
        header = _GPU_HEADER.match(line)
        if header:
            gpu = Node(value=header.group(1))
            gpus.append((header.group(1), gpu))
            stack = [(-1, gpu)]
            continue
        parsed = _parse_line(line)
        if parsed is None or (parsed[0] == 0 and gpus):
            # not a line of a reading (a prompt, a fence, a sentence): the reading ended here
            ended_at = n
            break
        indent, label, value = parsed
        while len(stack) > 1 and stack[-1][0] >= indent:
            stack.pop()
        node = stack[-1][1].children.setdefault(entry_key(label), Node(value=value))
        stack.append((indent, node))
    last = gpus[-1][1].children if gpus else {}
    if "product_name" in last and "processes" not in last:
        # every full nvidia-smi -q GPU entry has a Processes line near its end (a -q -d POWER one has neither)
        warnings.append("the reading is cut off: the last GPU's entry ends before its 'Processes' line")
    if ended_at is not None and any(x.strip() for x in lines[ended_at:]):
        warnings.append(f"text after the reading ignored (from line {ended_at + 1}: {lines[ended_at].strip()[:40]!r})")
    return ParsedLog(top, gpus, form="nvidia-smi -q", schema=None, warnings=warnings)
