"""Readings of ``nvidia-smi -q`` (text) and ``nvidia-smi -q -x`` (XML) turned into a :class:`Snapshot`.

A user who cannot run gpuprov on a host (or who asks for help) can paste what ``nvidia-smi`` printed there:
``gpuprov doctor --from gpu.xml``. Each GPU field is taken from the reading with the same meaning the probe
gives it from NVML (:mod:`provision.probe`):

- ``power_limit_w`` is NVML's management limit: "Requested Power Limit" since the 535 driver (XML
  ``<requested_power_limit>``), "Power Limit" before it; ``power_enforced_limit_w`` is "Current Power
  Limit" (``<current_power_limit>``), "Enforced Power Limit" before 535.
- "N/A" (and "[Not Supported]") is what nvidia-smi prints when NVML answers NOT_SUPPORTED: the field stays
  unknown (``None``, never 0) with ``not_supported`` in the GPU's ``unavailable``, as the probe records it.
- Temperatures printed only as offsets to T.Limit (recent datacenter drivers) give no absolute slowdown or
  shutdown temperature: those stay unknown, with the offset said in ``unavailable``.
- Compute capability is not in any reading: it comes from gpuprov's GPU catalog by the product name.
  A reading has no Python environment, CUDA toolkit, engines or host facts (kernel, distro, CPU, RAM):
  they are unknown, and the snapshot's note says so.

XML is parsed with the standard library's expat with no entity ever expanded: NVIDIA's own
``<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_vNN.dtd">`` line is taken out (it names the schema), and any
other DOCTYPE or an ENTITY declaration is refused. A paste with text around the reading (a shell prompt,
markdown fences) or cut off part-way is read as far as it goes, with a warning in the note.
"""

from __future__ import annotations

import collections
import datetime as _dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from provision import __version__
from provision.errors import SnapshotError
from provision.gpuarch import architecture_for_cc
from provision.gpus import lookup_gpu
from provision.nvmlcodes import CLOCK_EVENT_REASONS, decode_clock_event_reasons
from provision.snapshot import DriverInfo, GpuInfo, HostInfo, NvmlStatus, PythonEnv, Snapshot
from provision.typedjson import MAX_NUMBER
from provision.versions import is_driver_version

#: what nvidia-smi prints for a value NVML did not give (NOT_SUPPORTED and friends) → the probe's reason
_NOT_GIVEN = {
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

#: what no reading holds, said in every snapshot read from one
CANNOT_KNOW = (
    "compute capability (taken from gpuprov's GPU catalog by name)",
    "the Python stack (torch, vLLM, llama-cpp-python)",
    "CUDA toolkits and inference engines",
    "the host (kernel, distro, CPU, RAM, systemd, laptop chassis)",
    "the kernel module's flavour and NVML's library version",
)

_BIT_BY_NAME = {name: bit for bit, name in CLOCK_EVENT_REASONS.items()}
#: clock event reason spellings (XML tag suffix / text label, normalised) → NVML's reason name
_REASONS = {
    "gpu_idle": "gpu_idle",
    "idle": "gpu_idle",
    "applications_clocks_setting": "applications_clocks_setting",
    "sw_power_cap": "sw_power_cap",
    "hw_slowdown": "hw_slowdown",
    "hw_thermal_slowdown": "hw_thermal_slowdown",
    "hw_power_brake_slowdown": "hw_power_brake_slowdown",
    "sync_boost": "sync_boost",
    "sw_thermal_slowdown": "sw_thermal_slowdown",
    "display_clocks_setting": "display_clock_setting",
    "display_clock_setting": "display_clock_setting",
}
_COMPUTE_MODES = {
    "default": "default",
    "exclusive_process": "exclusive_process",
    "exclusive_thread": "exclusive_thread",
    "prohibited": "prohibited",
}
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z%/]*)\s*$")
_SCHEMA = re.compile(r"nvsmi_device_(v\d+)\.dtd")
_DOCTYPE = re.compile(r"<!DOCTYPE\s+nvidia_smi_log\s+SYSTEM\s+\"[^\"<>\[\]]*\"\s*>", re.IGNORECASE)


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
class SmiReading:
    """A reading turned into a snapshot, with where each GPU field came from and what was not in it."""

    snapshot: Snapshot
    #: "nvidia-smi -q" or "nvidia-smi -q -x"
    form: str
    #: the XML schema named by its DOCTYPE (v11, v12, v13), None for text or when there was none
    schema: str | None
    #: per GPU index: field → where it came from (the reading's entry, "catalog", "inferred: ...")
    origins: dict[int, dict[str, str]]
    warnings: list[str]


def detect(text: str) -> str | None:
    """ "xml" or "text" when ``text`` holds an nvidia-smi reading (anywhere in it), else None."""
    head = text[:1_000_000]
    if "<nvidia_smi_log" in head:
        return "xml"
    if "NVSMI LOG" in head or re.search(r"^[ \t]*Attached GPUs[ \t]*:", head, re.MULTILINE):
        return "text"
    return None


def read(text: str, *, source: str = "") -> SmiReading:
    """The reading in ``text`` (XML or text form). Raises :class:`SnapshotError` when there is none."""
    kind = detect(text)
    if kind == "xml":
        return read_xml(text, source=source)
    if kind == "text":
        return read_text(text, source=source)
    raise SnapshotError("not an nvidia-smi reading (no <nvidia_smi_log> and no 'NVSMI LOG' / 'Attached GPUs')")


# -- text form -----------------------------------------------------------------------------------------

_BUS_ID = r"[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]"
_GPU_HEADER = re.compile(rf"^GPU ({_BUS_ID})\s*$")
_FULL_BUS_ID = re.compile(rf"^{_BUS_ID}$")
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


def _key(label: str) -> str:
    return "_".join(re.sub(r"[^a-z0-9]+", " ", label.lower()).split())


def read_text(text: str, *, source: str = "") -> SmiReading:
    """An ``nvidia-smi -q`` reading (with or without text around it, whole or cut off)."""
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
        node = stack[-1][1].children.setdefault(_key(label), Node(value=value))
        stack.append((indent, node))
    last = gpus[-1][1].children if gpus else {}
    if "product_name" in last and "processes" not in last:
        # every full nvidia-smi -q GPU entry has a Processes line near its end (a -q -d POWER one has neither)
        warnings.append("the reading is cut off: the last GPU's entry ends before its 'Processes' line")
    if ended_at is not None and any(x.strip() for x in lines[ended_at:]):
        warnings.append(f"text after the reading ignored (from line {ended_at + 1}: {lines[ended_at].strip()[:40]!r})")
    return _reading(top, gpus, form="nvidia-smi -q", schema=None, warnings=warnings, source=source)


# -- XML form ------------------------------------------------------------------------------------------


#: a reading nests 5 deep; anything deeper is not one and is not read (nor recursed into)
_MAX_DEPTH = 12


def _xml_node(elem: ET.Element, depth: int = 0) -> Node:
    node = Node(value=None if len(elem) else (elem.text or "").strip())
    if depth < _MAX_DEPTH:
        for child in elem:
            node.children.setdefault(_key(child.tag), _xml_node(child, depth + 1))
    return node


def read_xml(text: str, *, source: str = "") -> SmiReading:
    """An ``nvidia-smi -q -x`` reading of any schema (v11 to v13), whole or cut off, chatter around it."""
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
            top.children.setdefault(_key(child.tag), _xml_node(child))
    gpus = [(g.get("id") or "", _xml_node(g)) for g in elems]
    return _reading(top, gpus, form="nvidia-smi -q -x", schema=schema, warnings=warnings, source=source)


# -- both forms: entries → snapshot ---------------------------------------------------------------------


def _given(value: str | None) -> tuple[str | None, str | None]:
    """(value, None) for a real value; (None, reason) for N/A and friends; (None, None) when absent."""
    if value is None:
        return None, None
    v = value.strip()
    reason = _NOT_GIVEN.get(v.lower())
    if reason is not None:
        return None, reason
    if not v:
        return None, "not_supported"
    return v, None


class _Gpu:
    """Fills one GpuInfo from its entries, recording each field's origin and each unknown's reason."""

    def __init__(self, gpu: GpuInfo, node: Node) -> None:
        self.gpu = gpu
        self.node = node
        self.origins: dict[str, str] = {}

    def raw(self, fld: str, *paths: tuple[str, ...]) -> str | None:
        value, path = self.node.text(*paths)
        given, reason = _given(value)
        if given is not None:
            assert path is not None
            self.origins[fld] = path
            return given
        if reason is not None:
            self.gpu.unavailable[fld] = reason
        return None

    def number(self, fld: str, *paths: tuple[str, ...], units: tuple[str, ...]) -> float | None:
        value = self.raw(fld, *paths)
        if value is None:
            return None
        m = _NUMBER.match(value)
        if not m or m.group(2).lower() not in {u.lower() for u in units}:
            self.origins.pop(fld, None)
            self.gpu.unavailable[fld] = "unreadable in the reading"
            return None
        number = float(m.group(1))
        if not 0 <= number <= MAX_NUMBER:
            self.origins.pop(fld, None)
            self.gpu.unavailable[fld] = "unreadable in the reading (out of range)"
            return None
        return number

    def integer(self, fld: str, *paths: tuple[str, ...], units: tuple[str, ...] = ("",)) -> int | None:
        number = self.number(fld, *paths, units=units)
        return None if number is None else int(number)

    def flag(self, fld: str, *paths: tuple[str, ...], yes: str = "enabled", no: str = "disabled") -> bool | None:
        value = self.raw(fld, *paths)
        if value is None:
            return None
        low = value.lower()
        if low in (yes, no):
            return low == yes
        self.origins.pop(fld, None)
        self.gpu.unavailable[fld] = "unreadable in the reading"
        return None


def _fill_gpu(index: int, bus_id: str, node: Node) -> tuple[GpuInfo, dict[str, str]]:
    gpu = GpuInfo(index=index, name="unknown")
    g = _Gpu(gpu, node)
    gpu.name = g.raw("name", ("product_name",)) or "unknown"
    gpu.uuid = g.raw("uuid", ("uuid",), ("gpu_uuid",))
    gpu.serial = g.raw("serial", ("serial",), ("serial_number",))
    gpu.pci_bus_id = g.raw("pci_bus_id", ("pci", "pci_bus_id"), ("pci", "bus_id"))
    if gpu.pci_bus_id is not None and not _FULL_BUS_ID.match(gpu.pci_bus_id):  # a paste cut inside the id
        g.origins.pop("pci_bus_id", None)
        gpu.pci_bus_id = None
    gpu.pci_bus_id = gpu.pci_bus_id or bus_id or None
    if gpu.pci_bus_id is not None and "pci_bus_id" not in g.origins:
        g.origins["pci_bus_id"] = "the GPU's heading"

    spec = lookup_gpu(gpu.name)
    if spec is not None:
        gpu.compute_capability = spec.compute_capability
        gpu.architecture = spec.architecture
        g.origins["compute_capability"] = g.origins["architecture"] = f"catalog ({spec.name})"
    else:
        gpu.unavailable["compute_capability"] = "not in the reading, and the GPU is not in gpuprov's catalog"
        arch = g.raw("architecture", ("product_architecture",))
        gpu.architecture = arch.split()[0] if arch else None  # "Ada Lovelace" → "Ada", as NVML names it

    mem = ("fb_memory_usage",)
    gpu.vram_total_mib = g.integer("vram_total_mib", (*mem, "total"), units=("MiB",))
    gpu.vram_used_mib = g.integer("vram_used_mib", (*mem, "used"), units=("MiB",))
    gpu.vram_free_mib = g.integer("vram_free_mib", (*mem, "free"), units=("MiB",))
    gpu.vram_reserved_mib = g.integer("vram_reserved_mib", (*mem, "reserved"), units=("MiB",))

    # power: the 535 driver renamed the section and the limits (requested = NVML's management limit,
    # current = the enforced one); older readings say power_limit / enforced_power_limit
    new, old = ("gpu_power_readings",), ("power_readings",)
    watts = ("W",)
    gpu.power_limit_w = g.number("power_limit_w", (*new, "requested_power_limit"), (*old, "power_limit"), units=watts)
    gpu.power_enforced_limit_w = g.number(
        "power_enforced_limit_w", (*new, "current_power_limit"), (*old, "enforced_power_limit"), units=watts
    )
    gpu.power_default_limit_w = g.number(
        "power_default_limit_w", (*new, "default_power_limit"), (*old, "default_power_limit"), units=watts
    )
    gpu.power_min_limit_w = g.number(
        "power_min_limit_w", (*new, "min_power_limit"), (*old, "min_power_limit"), units=watts
    )
    gpu.power_max_limit_w = g.number(
        "power_max_limit_w", (*new, "max_power_limit"), (*old, "max_power_limit"), units=watts
    )
    # NVML gives min and max together (nvmlDeviceGetPowerManagementLimitConstraints): one reason, as the probe
    reason = gpu.unavailable.pop("power_min_limit_w", None) or gpu.unavailable.pop("power_max_limit_w", None)
    gpu.unavailable.pop("power_max_limit_w", None)
    if reason and (gpu.power_min_limit_w is None or gpu.power_max_limit_w is None):
        gpu.unavailable["power_constraints_w"] = reason
    gpu.power_draw_w = g.number(
        "power_draw_w",
        (*new, "power_draw"),
        (*new, "average_power_draw"),
        (*new, "instant_power_draw"),
        (*new, "instantaneous_power_draw"),
        (*old, "power_draw"),
        units=watts,
    )
    if gpu.power_limit_w is None and gpu.power_enforced_limit_w is not None:
        # NVML's management-limit getter NOT_SUPPORTED while the enforced limit reads: the pattern of laptop
        # drivers that refuse limit changes ("Changing power management limit is not supported")
        gpu.unavailable["set_power_limit"] = "not_supported"
        g.origins["set_power_limit"] = "inferred: requested power limit N/A while the enforced limit reads"

    gpu.persistence_mode = g.flag("persistence_mode", ("persistence_mode",))
    pstate = g.raw("performance_state", ("performance_state",))
    if pstate is not None:
        m = re.fullmatch(r"P(\d{1,2})", pstate.strip())
        if m and int(m.group(1)) <= 15:
            gpu.performance_state = int(m.group(1))
        else:
            g.origins.pop("performance_state", None)
            gpu.unavailable["performance_state"] = "unreadable in the reading"

    temp = ("temperature",)
    celsius = ("C",)
    gpu.temperature_c = g.integer("temperature_c", (*temp, "gpu_temp"), (*temp, "gpu_current_temp"), units=celsius)
    gpu.temperature_slowdown_c = g.integer(
        "temperature_slowdown_c", (*temp, "gpu_temp_slow_threshold"), (*temp, "gpu_slowdown_temp"), units=celsius
    )
    gpu.temperature_shutdown_c = g.integer(
        "temperature_shutdown_c", (*temp, "gpu_temp_max_threshold"), (*temp, "gpu_shutdown_temp"), units=celsius
    )
    for fld, paths in (
        ("temperature_slowdown_c", ((*temp, "gpu_temp_slow_tlimit_threshold"), (*temp, "gpu_slowdown_t_limit_temp"))),
        ("temperature_shutdown_c", ((*temp, "gpu_temp_max_tlimit_threshold"), (*temp, "gpu_shutdown_t_limit_temp"))),
    ):
        if getattr(gpu, fld) is None:
            offset, _ = node.text(*paths)
            if offset is not None and _given(offset)[0] is not None:
                gpu.unavailable[fld] = f"given only as an offset to T.Limit ({offset.strip()}): absolute value unknown"

    reasons_node = node.get("clocks_event_reasons") or node.get("clocks_throttle_reasons")
    if reasons_node is not None:
        mask, readable = 0, False
        pending = collections.deque(reasons_node.children.items())
        while pending:
            key, child = pending.popleft()
            pending.extend(child.children.items())
            name = _REASONS.get(re.sub(r"^clocks_(?:event|throttle)_reason_", "", key))
            if name is None or child.value is None:
                continue
            if child.value.lower() == "active":
                mask |= _BIT_BY_NAME[name]
                readable = True
            elif child.value.lower() == "not active":
                readable = True
        if readable:
            gpu.clock_event_reasons_mask = mask
            gpu.clock_event_reasons = decode_clock_event_reasons(mask)
            g.origins["clock_event_reasons"] = (
                "clocks_event_reasons" if node.get("clocks_event_reasons") else ("clocks_throttle_reasons")
            )
    else:
        gpu.unavailable["clock_event_reasons"] = "not in the reading"

    mhz = ("MHz",)
    gpu.max_sm_clock_mhz = g.integer("max_sm_clock_mhz", ("max_clocks", "sm_clock"), ("max_clocks", "sm"), units=mhz)
    gpu.max_memory_clock_mhz = g.integer(
        "max_memory_clock_mhz", ("max_clocks", "mem_clock"), ("max_clocks", "memory"), units=mhz
    )
    xml_link, text_link = ("pci", "pci_gpu_link_info"), ("pci", "gpu_link_info")
    gpu.pcie_generation_current = g.integer(
        "pcie_generation_current",
        (*xml_link, "pcie_gen", "current_link_gen"),
        (*text_link, "pcie_generation", "current"),
    )
    gpu.pcie_generation_max = g.integer(
        "pcie_generation_max", (*xml_link, "pcie_gen", "max_link_gen"), (*text_link, "pcie_generation", "max")
    )
    gpu.pcie_width_current = g.integer(
        "pcie_width_current",
        (*xml_link, "link_widths", "current_link_width"),
        (*text_link, "link_width", "current"),
        units=("x",),
    )
    gpu.pcie_width_max = g.integer(
        "pcie_width_max",
        (*xml_link, "link_widths", "max_link_width"),
        (*text_link, "link_width", "max"),
        units=("x",),
    )

    gpu.ecc_enabled = g.flag("ecc_enabled", ("ecc_mode", "current_ecc"), ("ecc_mode", "current"))
    gpu.mig_enabled = g.flag("mig_enabled", ("mig_mode", "current_mig"), ("mig_mode", "current"))
    mode = g.raw("compute_mode", ("compute_mode",))
    if mode is not None:
        gpu.compute_mode = _COMPUTE_MODES.get(_key(mode))
        if gpu.compute_mode is None:
            g.origins.pop("compute_mode", None)
            gpu.unavailable["compute_mode"] = "unreadable in the reading"
    gpu.display_active = g.flag("display_active", ("display_active",))
    util = g.integer("utilization_gpu_pct", ("utilization", "gpu_util"), ("utilization", "gpu"), units=("%",))
    gpu.utilization_gpu_pct = None if util is None or util > 100 else util
    return gpu, g.origins


def _version(value: str | None, valid: re.Pattern[str] | None = None) -> str | None:
    given, _ = _given(value)
    if given is None:
        return None
    if valid is None:
        return given if is_driver_version(given) else None
    return given if valid.fullmatch(given) else None


_CUDA = re.compile(r"[0-9]{1,2}\.[0-9]{1,2}")


def _created_at(value: str | None) -> str:
    given, _ = _given(value)
    if given is None:
        return ""
    try:
        stamp = _dt.datetime.strptime(" ".join(given.split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return ""
    return stamp.isoformat()


def _reading(
    top: Node, gpu_nodes: list[tuple[str, Node]], *, form: str, schema: str | None, warnings: list[str], source: str
) -> SmiReading:
    driver = DriverInfo()
    raw_driver, _ = top.text(("driver_version",))
    driver.driver_version = _version(raw_driver)
    if raw_driver is not None and driver.driver_version is None and _given(raw_driver)[0] is not None:
        warnings.append("the driver version is not one (e.g. 560.35.03): left unknown")
    raw_cuda, _ = top.text(("cuda_version",))
    driver.cuda_driver_version = _version(raw_cuda, _CUDA)
    if driver.cuda_driver_version is None:
        driver.unavailable["cuda_driver_version"] = "not_supported" if _given(raw_cuda)[1] else "not in the reading"
    driver.unavailable["nvml_version"] = "not in a reading"
    gpus: list[GpuInfo] = []
    origins: dict[int, dict[str, str]] = {}
    for index, (bus_id, node) in enumerate(gpu_nodes):
        gpu, where = _fill_gpu(index, bus_id, node)
        gpus.append(gpu)
        origins[index] = where
    attached, _ = top.text(("attached_gpus",))
    if attached is not None and attached.strip().isdigit() and int(attached) != len(gpus):
        warnings.append(f"the reading says {int(attached)} GPU(s) attached, {len(gpus)} are in it")
    uuids = [g.uuid for g in gpus if g.uuid]
    if len(set(uuids)) != len(uuids):
        warnings.append("several GPUs carry the same UUID (an edited reading?): GPUs are told apart by index")
        for gpu in gpus:
            gpu.uuid = None
            gpu.unavailable["uuid"] = "the same UUID on several GPUs of the reading"
    if gpus:
        driver.nvml = NvmlStatus(True, "ok", "")
    else:
        driver.nvml = NvmlStatus(False, "no_gpu", f"no GPU in the {form} reading")
    laptop = any((spec := lookup_gpu(g.name)) is not None and spec.laptop for g in gpus)
    what = f"{form}" + (f" (XML {schema})" if schema else "")
    note = f"read from {what}" + (f" {source}" if source else "") + ": GPUs, driver and CUDA version as printed"
    note += "; not in a reading: " + "; ".join(CANNOT_KNOW)
    refused = [str(i) for i, where in origins.items() if "set_power_limit" in where]
    if refused:
        note += (
            f"; inferred: GPU {', '.join(refused)} refuses power-limit changes (its requested limit is N/A while the "
            "enforced one reads, as on laptops whose driver refuses them)"
        )
    if warnings:
        note += ". Warning: " + "; ".join(warnings)
    snap = Snapshot(
        origin="recorded",
        note=note,
        created_at=_created_at(top.text(("timestamp",))[0]),
        gpuprov_version=__version__,
        host=HostInfo(laptop=True if laptop else None),
        driver=driver,
        gpus=gpus,
        python=PythonEnv(),  # unknown, not broken: the note says a reading has no Python stack
    )
    for gpu in gpus:
        if gpu.architecture is None and gpu.compute_capability is not None:
            gpu.architecture = architecture_for_cc(gpu.compute_capability)
    # through the same checks as a snapshot file: bounded texts, control characters out, versions checked
    snap = Snapshot.from_dict(snap.to_dict())
    return SmiReading(snapshot=snap, form=form, schema=schema, origins=origins, warnings=warnings)
