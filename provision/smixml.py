"""The XML form of a reading, ``nvidia-smi -q -x``, parsed with the standard library's expat and no entity ever
expanded: NVIDIA's own ``<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_vNN.dtd">`` line is taken out (it
names the schema), and any other DOCTYPE or an ENTITY declaration is refused."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from provision.errors import SnapshotError
from provision.smientries import Node, ParsedLog, entry_key

_SCHEMA = re.compile(r"nvsmi_device_(v\d+)\.dtd")
_DOCTYPE = re.compile(r"<!DOCTYPE\s+nvidia_smi_log\s+SYSTEM\s+\"[^\"<>\[\]]*\"\s*>", re.IGNORECASE)

#: a reading nests 5 deep; anything deeper is not one and is not read (nor recursed into)
_MAX_DEPTH = 12


def _xml_node(elem: ET.Element, depth: int = 0) -> Node:
    node = Node(value=None if len(elem) else (elem.text or "").strip())
    if depth < _MAX_DEPTH:
        for child in elem:
            node.children.setdefault(entry_key(child.tag), _xml_node(child, depth + 1))
    return node


def parse_xml(text: str) -> ParsedLog:
    """An ``nvidia-smi -q -x`` reading of any schema (v11 to v13), whole or cut off, chatter around it, parsed."""
    warnings: list[str] = []
    begin = text.find("<?xml")
    log_at = text.find("<nvidia_smi_log")
    if log_at < 0:
        raise SnapshotError("not an nvidia-smi -q -x reading: no <nvidia_smi_log> element")
    if begin < 0 or begin > log_at:
        begin = text.rfind("<!DOCTYPE", 0, log_at)
        begin = log_at if begin < 0 else begin
    if text[:begin].strip():
        warnings.append("text before the reading ignored")
    body = text[begin:]
    end = body.find("</nvidia_smi_log>")
    if end >= 0:
        end += len("</nvidia_smi_log>")
        if body[end:].strip():
            warnings.append("text after the reading ignored")
        body = body[:end]
    schema = None
    doctype = _DOCTYPE.search(body)
    if doctype:
        found = _SCHEMA.search(doctype.group(0))
        schema = found.group(1) if found else None
        body = body[: doctype.start()] + body[doctype.end() :]
    if re.search(r"<!DOCTYPE|<!ENTITY", body, re.IGNORECASE):
        raise SnapshotError(
            "the XML declares a DOCTYPE or entities of its own: not what nvidia-smi -q -x writes, refused "
            "(entities are never expanded)"
        )
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    root: ET.Element | None = None
    open_gpu: ET.Element | None = None
    done: list[ET.Element] = []
    truncated = False
    try:
        parser.feed(body)
        parser.close()
    except (ET.ParseError, UnicodeError):  # cut off, malformed, or a character expat cannot take
        truncated = True
    try:
        for item in parser.read_events():
            event, elem = item[0], item[-1]  # (event, element); other shapes are events not asked for
            if not isinstance(elem, ET.Element):
                continue
            if event == "start":
                if root is None:
                    root = elem
                elif elem.tag == "gpu" and open_gpu is None:
                    open_gpu = elem
            elif elem is open_gpu:
                done.append(elem)
                open_gpu = None
    except ET.ParseError:  # pragma: no cover - read_events only yields what parsed
        truncated = True
    if root is None or root.tag != "nvidia_smi_log":
        raise SnapshotError("not an nvidia-smi -q -x reading: the XML does not start with <nvidia_smi_log>")
    if end < 0 or truncated:
        warnings.append("the reading is cut off or malformed part-way: read as far as it goes")
    elems = done + ([open_gpu] if open_gpu is not None else [])
    top = Node()
    for child in root:
        if child.tag != "gpu":
            top.children.setdefault(entry_key(child.tag), _xml_node(child))
    gpus = [(g.get("id") or "", _xml_node(g)) for g in elems]
    return ParsedLog(top, gpus, form="nvidia-smi -q -x", schema=schema, warnings=warnings)
