"""Checks of the GPUs' own state: held back by heat or power, near the slowdown temperature, persistence off on
a headless host, a lowered power limit, a narrow PCIe link, MIG on, ECC off on a datacenter part. Pure
functions of a snapshot, registered with :func:`provision.diagnosis.check` (listed in its ``CHECK_MODULES``).
"""

from __future__ import annotations

from collections.abc import Iterable

from provision.diagnosis import Finding, check
from provision.gpus import lookup_gpu
from provision.nvmlcodes import THROTTLE_REASONS
from provision.snapshot import GpuInfo, Snapshot


def _gpu_subject(gpu: GpuInfo) -> str:
    return f"gpu{gpu.index}"


# -- driver / NVML ---------------------------------------------------------------------------------


@check
def throttling(s: Snapshot) -> Iterable[Finding]:
    for gpu in s.gpus:
        active = [r for r in gpu.clock_event_reasons if r in THROTTLE_REASONS]
        if not active:
            continue
        thermal = any("thermal" in r for r in active)
        temp = f" at {gpu.temperature_c} °C" if gpu.temperature_c is not None else ""
        draw = (
            f", drawing {gpu.power_draw_w:.0f} W of {gpu.power_limit_w:.0f} W"
            if (gpu.power_draw_w is not None and gpu.power_limit_w is not None)
            else ""
        )
        yield Finding(
            "gpu.throttling",
            "warn",
            f"{gpu.name} is slowed down ({', '.join(active)}){temp}{draw}",
            "improve cooling (fans, airflow, laptop cooling pad) and check for dust"
            if thermal
            else "the power limit is capping clocks: expected under a lowered limit, otherwise check the PSU "
            "cables and the limit (gpuprov plan)",
            _gpu_subject(gpu),
        )


@check
def hot(s: Snapshot) -> Iterable[Finding]:
    for gpu in s.gpus:
        t, slow = gpu.temperature_c, gpu.temperature_slowdown_c
        if t is None or slow is None or slow <= 0 or t < slow - 5:
            continue
        yield Finding(
            "gpu.near_slowdown_temperature",
            "warn",
            f"{gpu.name} is at {t} °C, within 5 °C of its slowdown threshold ({slow} °C)",
            "improve cooling, or lower the power limit (see gpuprov profiles)",
            _gpu_subject(gpu),
        )


@check
def persistence_headless(s: Snapshot) -> Iterable[Finding]:
    if s.host.graphical_session:
        return
    for gpu in s.gpus:
        if gpu.persistence_mode is False and not gpu.display_active:
            yield Finding(
                "gpu.persistence_off",
                "warn",
                f"persistence mode is off on {gpu.name} on a headless host: the driver tears down and "
                "re-initialises the GPU (seconds) whenever no process holds it, and settings like the power "
                "limit can be lost",
                "enable nvidia-persistenced: sudo systemctl enable --now nvidia-persistenced "
                "(or apply a gpuprov profile)",
                _gpu_subject(gpu),
            )


@check
def power_below_default(s: Snapshot) -> Iterable[Finding]:
    for gpu in s.gpus:
        limit, default = gpu.power_limit_w, gpu.power_default_limit_w
        if limit is None or default is None or limit >= default - 0.5:
            continue
        yield Finding(
            "gpu.power_limit_lowered",
            "info",
            f"{gpu.name} power limit is {limit:.0f} W, below its default {default:.0f} W "
            f"({100 * limit / default:.0f} %)",
            "intended for efficiency or heat; raise it with a profile if you need peak throughput",
            _gpu_subject(gpu),
        )


@check
def pcie_width(s: Snapshot) -> Iterable[Finding]:
    for gpu in s.gpus:
        cur, top = gpu.pcie_width_current, gpu.pcie_width_max
        if cur is None or top is None or cur >= top:
            continue
        yield Finding(
            "gpu.pcie_narrow",
            "warn",
            f"{gpu.name} PCIe link runs x{cur} of x{top}: loading models and host↔GPU copies are slower",
            "reseat the card in a full-width slot, check riser cables and the BIOS lane settings",
            _gpu_subject(gpu),
        )


@check
def mig_enabled(s: Snapshot) -> Iterable[Finding]:
    for gpu in s.gpus:
        if gpu.mig_enabled:
            yield Finding(
                "gpu.mig_enabled",
                "warn",
                f"MIG is enabled on {gpu.name}: CUDA programs see MIG instances, not the whole GPU",
                "address MIG devices by their MIG-... UUID (nvidia-smi -L), or disable MIG: "
                "sudo nvidia-smi -i N -mig 0",
                _gpu_subject(gpu),
            )


def is_datacenter_gpu(name: str) -> bool:
    """Whether the GPU catalog (``data/gpus.toml``, each row's ``datacenter`` with its source) marks NVML's name
    as a datacenter part. A GPU the catalog does not know is not one."""
    spec = lookup_gpu(name)
    return spec is not None and spec.datacenter


@check
def ecc_datacenter(s: Snapshot) -> Iterable[Finding]:
    for gpu in s.gpus:
        if gpu.ecc_enabled is False and is_datacenter_gpu(gpu.name):
            yield Finding(
                "gpu.ecc_disabled",
                "warn",
                f"ECC is disabled on {gpu.name}, a datacenter GPU: memory errors go undetected",
                "enable it (takes effect after a GPU reset or reboot): sudo nvidia-smi -i N -e 1",
                _gpu_subject(gpu),
            )


@check
def gpus_ok(s: Snapshot) -> Iterable[Finding]:
    for gpu in s.gpus:
        vram = f"{gpu.vram_total_mib / 1024:.0f} GiB" if gpu.vram_total_mib else "? GiB"
        cc = f"cc {gpu.compute_capability}" if gpu.compute_capability else "cc ?"
        yield Finding(
            "gpu.ok",
            "ok",
            f"{gpu.name}: {gpu.architecture or '?'} {cc}, {vram}",
            "",
            _gpu_subject(gpu),
        )
