"""One GPU of a reading as a :class:`~provision.snapshot.GpuInfo`: each field taken from the entry that means
what NVML's answer means to the probe, with where it came from, and why it is unknown when it is.

- ``power_limit_w`` is NVML's management limit: "Requested Power Limit" since the 535 driver (XML
  ``<requested_power_limit>``), "Power Limit" before it; ``power_enforced_limit_w`` is "Current Power
  Limit" (``<current_power_limit>``), "Enforced Power Limit" before 535.
- "N/A" (and "[Not Supported]") is what nvidia-smi prints when NVML answers NOT_SUPPORTED: the field stays
  unknown (``None``, never 0) with ``not_supported`` in the GPU's ``unavailable``, as the probe records it.
- Temperatures printed only as offsets to T.Limit (recent datacenter drivers) give no absolute slowdown or
  shutdown temperature: those stay unknown, with the offset said in ``unavailable``.
- Compute capability is not in any reading: it comes from gpuprov's GPU catalog by the product name.
"""

from __future__ import annotations

import collections
import re

from provision.gpus import lookup_gpu
from provision.nvmlcodes import CLOCK_EVENT_REASONS, decode_clock_event_reasons
from provision.smientries import BUS_ID, Node, entry_key, value_and_reason
from provision.snapshot import GpuInfo
from provision.typedjson import MAX_NUMBER

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

_FULL_BUS_ID = re.compile(rf"^{BUS_ID}$")


class _Gpu:
    """Fills one GpuInfo from its entries, recording each field's origin and each unknown's reason."""

    def __init__(self, gpu: GpuInfo, node: Node) -> None:
        self.gpu = gpu
        self.node = node
        self.origins: dict[str, str] = {}

    def raw(self, fld: str, *paths: tuple[str, ...]) -> str | None:
        value, path = self.node.text(*paths)
        given, reason = value_and_reason(value)
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


def fill_gpu(index: int, bus_id: str, node: Node) -> tuple[GpuInfo, dict[str, str]]:
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
            if offset is not None and value_and_reason(offset)[0] is not None:
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
        gpu.compute_mode = _COMPUTE_MODES.get(entry_key(mode))
        if gpu.compute_mode is None:
            g.origins.pop("compute_mode", None)
            gpu.unavailable["compute_mode"] = "unreadable in the reading"
    gpu.display_active = g.flag("display_active", ("display_active",))
    util = g.integer("utilization_gpu_pct", ("utilization", "gpu_util"), ("utilization", "gpu"), units=("%",))
    gpu.utilization_gpu_pct = None if util is None or util > 100 else util
    return gpu, g.origins
