"""NVML's numeric codes and the names gpuprov gives them: clock event reasons and compute modes (nvml.h).

Plain data and one decoder, importing nothing: the probe decodes what NVML answers with them, the
nvidia-smi reader maps the words nvidia-smi prints back onto the same names, and the checks, the monitor
and the benchmark judge the names — none of them needs ``pynvml`` for that.
"""

from __future__ import annotations

#: nvmlClocksEventReasons bits (nvml.h; "ThrottleReasons" is the deprecated name)
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}

#: reasons that mean the GPU is being held back by heat or power, not by choice or idleness
THROTTLE_REASONS = {
    "sw_power_cap",
    "hw_slowdown",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
}

#: nvmlComputeMode_t
COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}


def decode_clock_event_reasons(mask: int) -> list[str]:
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"unknown_0x{unknown:x}")
    return names
