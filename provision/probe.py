"""The probe: the full reading of a host. It returns a :class:`~provision.snapshot.Snapshot`.

The host's files, toolkits, engines and Python stack, and each GPU through NVML one field at a time
(:mod:`provision.nvmlfields`: a field a GPU lacks is a recorded reason, never the end of the probe). NVML
failing to start is classified and the rest of the host is still reported. Reading GPUs again and again
while something runs: :mod:`provision.gpuwatch`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from pathlib import Path
from typing import Any

from provision import __version__, engines, hostfacts, nvml, nvmlcodes, pyenv, roottree, toolkits
from provision.console import printable_copy
from provision.gpuarch import NVML_ARCHITECTURES, architecture_for_cc
from provision.nvmlfields import (
    FieldReader,
    as_text,
    classify_init_failure,
    mib,
    read_clock_events,
    read_memory,
    read_temperature,
    watts,
)
from provision.serving import units as serving_units
from provision.snapshot import DriverInfo, GpuInfo, NvmlStatus, Snapshot, masked_env

#: environment variables worth reporting (prefix match for those ending in "_")
RELEVANT_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_HOME",
    "CUDA_PATH",
    "LD_LIBRARY_PATH",
    "PATH",
    "PYTORCH_CUDA_ALLOC_CONF",
    "TORCH_CUDA_ARCH_LIST",
    "CMAKE_ARGS",
    "OLLAMA_",
    "VLLM_",
    "HF_HOME",
)


def relevant_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    out = {}
    for key in sorted(environ):
        for name in RELEVANT_ENV:
            if key == name or (name.endswith("_") and key.startswith(name)):
                out[key] = environ[key]
                break
    return out


def probe(
    *,
    python: str | None = None,
    nvml_backend: Any = None,
    root: Path = Path("/"),
    python_stack: bool = True,
    gpus: bool = True,
) -> Snapshot:
    """Read this host. ``python``: the interpreter whose environment to report (default: ours).
    ``python_stack=False``: without the Python-stack probe; ``gpus=False``: no NVML call at all."""
    environ = dict(os.environ)
    snap = Snapshot(
        origin="live",
        created_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        gpuprov_version=__version__,
    )
    snap.host = hostfacts.read_host(root=root)
    snap.host.servers = serving_units.installed_servers(root)
    if gpus:
        backend = nvml_backend if nvml_backend is not None else nvml.backend()
        snap.driver, snap.gpus = probe_gpus(backend, root=root)
    snap.cuda_toolkits = toolkits.find_toolkits(environ, root=root)  # a llama_cpp build picks its nvcc
    if python_stack:
        snap.python = pyenv.read_environment(python)
    snap.engines = engines.find_engines(environ)
    snap.env = masked_env(relevant_env(environ))  # a secret's value is never kept, so never shown
    shown: Snapshot = printable_copy(snap)  # no text from this host reaches a terminal as control characters
    return shown


def plan_snapshot(*, root: Path = Path("/")) -> Snapshot:
    """What a plan needs: the probe without the Python-stack part. For an image tree (``root`` not
    ``/``) no NVML call at all: the GPUs are those of the machine the image boots on, and its boot unit
    applies the settings there; the snapshot has no GPU."""
    return probe(root=root, python_stack=False, gpus=not roottree.is_image(root))


def probe_gpus(backend: Any, *, root: Path = Path("/")) -> tuple[DriverInfo, list[GpuInfo]]:
    driver = hostfacts.read_driver_files(root=root)
    driver.persistenced_running = hostfacts.process_running("nvidia-persistenced", root=root)
    try:
        backend.nvmlInit()
    except Exception as exc:  # NVMLError, or OSError from a broken library
        driver.nvml = classify_init_failure(exc, driver)
        return driver, []
    try:
        reader = FieldReader(backend, driver.unavailable)
        driver.driver_version = reader.get("driver_version", "nvmlSystemGetDriverVersion")
        driver.nvml_version = reader.get("nvml_version", "nvmlSystemGetNVMLVersion")
        cuda = reader.get("cuda_driver_version", "nvmlSystemGetCudaDriverVersion_v2")
        if cuda is None:
            cuda = reader.get("cuda_driver_version", "nvmlSystemGetCudaDriverVersion")
        if cuda is not None:
            driver.unavailable.pop("cuda_driver_version", None)
            driver.cuda_driver_version = f"{cuda // 1000}.{cuda % 1000 // 10}"
        count = reader.get("device_count", "nvmlDeviceGetCount") or 0
        if count == 0:
            driver.nvml = NvmlStatus(False, "no_gpu", "the driver is loaded but NVML sees no GPU")
            return driver, []
        driver.nvml = NvmlStatus(True, "ok", "")
        gpus = [_probe_gpu(backend, i) for i in range(count)]
        return driver, gpus
    finally:
        with contextlib.suppress(Exception):
            backend.nvmlShutdown()


def _probe_gpu(backend: Any, index: int) -> GpuInfo:
    gpu = GpuInfo(index=index, name="unknown")
    r = FieldReader(backend, gpu.unavailable)
    h = r.get("handle", "nvmlDeviceGetHandleByIndex", index)
    if h is None:
        return gpu
    gpu.name = r.get("name", "nvmlDeviceGetName", h) or "unknown"
    gpu.uuid = r.get("uuid", "nvmlDeviceGetUUID", h)
    gpu.serial = r.get("serial", "nvmlDeviceGetSerial", h)
    pci = r.get("pci_bus_id", "nvmlDeviceGetPciInfo", h)
    if pci is not None:
        gpu.pci_bus_id = as_text(getattr(pci, "busId", None))
    cc = r.get("compute_capability", "nvmlDeviceGetCudaComputeCapability", h)
    if cc is not None:
        gpu.compute_capability = f"{cc[0]}.{cc[1]}"
    arch = r.get("architecture", "nvmlDeviceGetArchitecture", h)
    gpu.architecture = NVML_ARCHITECTURES.get(arch) if arch is not None else None
    if gpu.architecture is None:
        gpu.architecture = architecture_for_cc(gpu.compute_capability)
        if gpu.architecture is not None:
            gpu.unavailable.pop("architecture", None)

    mem = read_memory(r, h)
    if mem is not None:
        gpu.vram_total_mib = mib(mem.total)
        gpu.vram_used_mib = mib(mem.used)
        gpu.vram_free_mib = mib(mem.free)
        gpu.vram_reserved_mib = mib(getattr(mem, "reserved", None))

    gpu.power_limit_w = watts(r.get("power_limit_w", "nvmlDeviceGetPowerManagementLimit", h))
    gpu.power_default_limit_w = watts(r.get("power_default_limit_w", "nvmlDeviceGetPowerManagementDefaultLimit", h))
    constraints = r.get("power_constraints_w", "nvmlDeviceGetPowerManagementLimitConstraints", h)
    if constraints is not None:
        gpu.power_min_limit_w, gpu.power_max_limit_w = watts(constraints[0]), watts(constraints[1])
    gpu.power_enforced_limit_w = watts(r.get("power_enforced_limit_w", "nvmlDeviceGetEnforcedPowerLimit", h))
    gpu.power_draw_w = watts(r.get("power_draw_w", "nvmlDeviceGetPowerUsage", h))

    pm = r.get("persistence_mode", "nvmlDeviceGetPersistenceMode", h)
    gpu.persistence_mode = None if pm is None else bool(pm)
    gpu.performance_state = r.get("performance_state", "nvmlDeviceGetPerformanceState", h)
    if gpu.performance_state == 32:  # NVML_PSTATE_UNKNOWN
        gpu.performance_state = None

    gpu.temperature_c = read_temperature(r, h)
    gpu.temperature_slowdown_c = r.get("temperature_slowdown_c", "nvmlDeviceGetTemperatureThreshold", h, 1)
    gpu.temperature_shutdown_c = r.get("temperature_shutdown_c", "nvmlDeviceGetTemperatureThreshold", h, 0)

    read_clock_events(r, h, gpu)

    gpu.max_sm_clock_mhz = r.get("max_sm_clock_mhz", "nvmlDeviceGetMaxClockInfo", h, 1)  # NVML_CLOCK_SM
    gpu.max_memory_clock_mhz = r.get("max_memory_clock_mhz", "nvmlDeviceGetMaxClockInfo", h, 2)  # MEM
    gpu.pcie_generation_current = r.get("pcie_generation_current", "nvmlDeviceGetCurrPcieLinkGeneration", h)
    gpu.pcie_generation_max = r.get("pcie_generation_max", "nvmlDeviceGetMaxPcieLinkGeneration", h)
    gpu.pcie_width_current = r.get("pcie_width_current", "nvmlDeviceGetCurrPcieLinkWidth", h)
    gpu.pcie_width_max = r.get("pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth", h)

    ecc = r.get("ecc_enabled", "nvmlDeviceGetEccMode", h)
    gpu.ecc_enabled = None if ecc is None else bool(ecc[0])
    mig = r.get("mig_enabled", "nvmlDeviceGetMigMode", h)
    gpu.mig_enabled = None if mig is None else bool(mig[0])
    cm = r.get("compute_mode", "nvmlDeviceGetComputeMode", h)
    gpu.compute_mode = None if cm is None else nvmlcodes.COMPUTE_MODES.get(cm, str(cm))
    da = r.get("display_active", "nvmlDeviceGetDisplayActive", h)
    gpu.display_active = None if da is None else bool(da)
    return gpu
