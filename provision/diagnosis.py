"""Diagnosis: pure functions of a snapshot that return findings.

A check is a function ``Snapshot -> Iterable[Finding]`` decorated with :func:`check`. Other parts of
gpuprov (the compatibility matrix) contribute checks through the same registry: list their module
in :data:`CHECK_MODULES` and decorate their functions with :func:`check`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from provision.gpus import lookup_gpu
from provision.nvmlcodes import THROTTLE_REASONS
from provision.snapshot import GpuInfo, Snapshot
from provision.versions import major_minor as _major_minor

SEVERITIES = ("ok", "info", "warn", "error")

#: modules whose import registers more checks (kept lazy: imported on the first diagnose())
CHECK_MODULES: list[str] = ["provision.compat.findings", "provision.servingcheck"]


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    message: str
    remedy: str = ""
    #: what it is about: "host", "driver", "gpu0", "cuda", "python", "env"
    subject: str = "host"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


Check = Callable[[Snapshot], Iterable[Finding]]
_CHECKS: list[Check] = []


def check(fn: Check) -> Check:
    _CHECKS.append(fn)
    return fn


def registered_checks() -> list[Check]:
    for name in CHECK_MODULES:
        importlib.import_module(name)
    return list(_CHECKS)


def diagnose(snapshot: Snapshot) -> list[Finding]:
    findings: list[Finding] = []
    for fn in registered_checks():
        try:
            findings.extend(fn(snapshot))
        except Exception as exc:  # a check that breaks on an odd snapshot must not hide the others
            findings.append(
                Finding(
                    f"doctor.check_failed.{fn.__name__}",
                    "warn",
                    f"the {fn.__name__} check could not read this snapshot ({type(exc).__name__}: {exc})",
                    "report it with the snapshot (gpuprov doctor --save FILE --redact)",
                    "doctor",
                )
            )
    order = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    return sorted(findings, key=lambda f: order[f.severity])


def exit_code(findings: Iterable[Finding], *, strict: bool = False) -> int:
    bad = {"error", "warn"} if strict else {"error"}
    return 1 if any(f.severity in bad for f in findings) else 0


def _gpu_subject(gpu: GpuInfo) -> str:
    return f"gpu{gpu.index}"


# -- driver / NVML ---------------------------------------------------------------------------------

_NVML_REMEDIES = {
    "library_not_found": (
        "install the NVIDIA driver from your distribution (Debian: apt install nvidia-driver; "
        "Ubuntu: ubuntu-drivers install), then reboot"
    ),
    "driver_not_loaded": (
        "load it: sudo modprobe nvidia (if that fails: check dmesg, Secure Boot module signing, "
        "and that nouveau is blacklisted), or reboot"
    ),
    "version_mismatch": (
        "the driver was upgraded but the old kernel module is still loaded: reboot (or stop every GPU "
        "process and reload the nvidia modules)"
    ),
    "no_permission": (
        "check the modes of /dev/nvidia* (should be 0666, or add the user to the video/render group) "
        "and the container's device cgroup"
    ),
    "no_gpu": "check that the GPU is seen on the bus (lspci -d 10de:) and that dmesg shows no NVRM errors",
    "unknown": "run nvidia-smi for the driver's own message, and check dmesg for NVRM errors",
}


@check
def nvml_status(s: Snapshot) -> Iterable[Finding]:
    d = s.driver
    if d.nvml.ok:
        cuda = f", supports CUDA {d.cuda_driver_version}" if d.cuda_driver_version else ""
        flavor = f" ({d.kernel_module_flavor} kernel module)" if d.kernel_module_flavor else ""
        yield Finding("driver.ok", "ok", f"driver {d.driver_version}{flavor}{cuda}; {len(s.gpus)} GPU(s)", "", "driver")
        return
    yield Finding(
        f"driver.{d.nvml.kind}",
        "error",
        d.nvml.message or f"NVML failed to start ({d.nvml.kind})",
        _NVML_REMEDIES.get(d.nvml.kind, _NVML_REMEDIES["unknown"]),
        "driver",
    )


# -- environment -----------------------------------------------------------------------------------

_HIDE_ALL = {"", "-1", "none", "nodevfiles", "void"}


@check
def cuda_visible_devices(s: Snapshot) -> Iterable[Finding]:
    value = s.env.get("CUDA_VISIBLE_DEVICES")
    if value is None or not s.gpus:
        return
    if value.strip().lower() in _HIDE_ALL:
        yield Finding(
            "env.cuda_visible_devices.hides_all",
            "error",
            f"CUDA_VISIBLE_DEVICES='{value}' hides every GPU: CUDA programs will see none",
            "unset CUDA_VISIBLE_DEVICES, or list the GPUs to use (e.g. CUDA_VISIBLE_DEVICES=0)",
            "env",
        )
        return
    indices = {str(g.index) for g in s.gpus}
    uuids = {g.uuid for g in s.gpus if g.uuid}
    mig_on = any(g.mig_enabled for g in s.gpus)
    missing = []
    items = [p.strip() for p in value.split(",")]
    for item in items:
        if item.isdigit():
            if item not in indices:
                missing.append(item)
        elif item.startswith("GPU-"):
            if uuids and not any(u.startswith(item) for u in uuids):
                missing.append(item)
        elif item.startswith("MIG-"):
            if not mig_on:
                missing.append(item)  # a MIG instance, on a host where no GPU has MIG enabled
        else:
            missing.append(item)
    if not missing:
        return
    gpus = ", ".join(sorted(indices))
    remedy = "use indices 0.." + str(len(s.gpus) - 1) + " or UUIDs from `nvidia-smi -L`"
    if items[0] == missing[0]:  # CUDA stops at the first invalid entry: here that is the first one
        yield Finding(
            "env.cuda_visible_devices.hides_all",
            "error",
            f"CUDA_VISIBLE_DEVICES='{value}' starts with {missing[0]}, which is not a GPU here "
            f"(GPUs: {gpus}): CUDA stops at the first invalid entry and sees no GPU",
            remedy + " (MIG-... only with MIG on)",
            "env",
        )
        return
    yield Finding(
        "env.cuda_visible_devices.missing",
        "warn",
        f"CUDA_VISIBLE_DEVICES names {', '.join(missing)}, which is not a GPU here "
        f"(GPUs: {gpus}); CUDA stops at the first invalid entry",
        remedy,
        "env",
    )


# -- Python environment ----------------------------------------------------------------------------


@check
def torch_cpu_only(s: Snapshot) -> Iterable[Finding]:
    torch = s.python.packages.get("torch")
    if torch is None or not s.gpus:
        return
    if s.python.torch_cuda is None and s.python.torch_hip is None:
        yield Finding(
            "python.torch_cpu_only",
            "error",
            f"torch {torch.version} is a CPU-only build on a host with {len(s.gpus)} NVIDIA GPU(s)",
            "reinstall a CUDA build: gpuprov compat plan --format constraints, then "
            "uv pip install torch --index-url https://download.pytorch.org/whl/cuXYZ",
            "python",
        )


@check
def llama_cpp_without_cuda(s: Snapshot) -> Iterable[Finding]:
    pkg = s.python.packages.get("llama-cpp-python")
    if pkg is None or not s.gpus or s.python.llama_cpp_cuda is not False:
        return
    yield Finding(
        "python.llama_cpp_cpu_only",
        "warn",
        f"llama-cpp-python {pkg.version} was built without CUDA: every layer runs on the CPU",
        "rebuild it for this GPU: gpuprov build llama-cpp",
        "python",
    )


@check
def pynvml_clobbered(s: Snapshot) -> Iterable[Finding]:
    providers = s.python.pynvml_providers
    if len(providers) > 1:
        yield Finding(
            "python.pynvml_conflict",
            "warn",
            f"several distributions install the pynvml module ({', '.join(providers)}); the last one installed wins",
            "keep only nvidia-ml-py: uv pip uninstall " + " ".join(p for p in providers if p != "nvidia-ml-py"),
            "python",
        )


@check
def python_env_error(s: Snapshot) -> Iterable[Finding]:
    if s.python.error:
        yield Finding(
            "python.unreadable",
            "error",
            s.python.error,
            "pass --python PATH to a working interpreter",
            "python",
        )


# -- CUDA toolkits ---------------------------------------------------------------------------------


@check
def nvcc_newer_than_driver(s: Snapshot) -> Iterable[Finding]:
    driver = _major_minor(s.driver.cuda_driver_version)
    if driver is None:
        return
    for tk in s.cuda_toolkits:
        mine = _major_minor(tk.version)
        if mine is None or mine <= driver:
            continue
        major_newer = mine[0] > driver[0]
        yield Finding(
            "cuda.nvcc_newer_than_driver",
            "error" if major_newer else "warn",
            f"nvcc {tk.version} ({tk.nvcc}) is newer than the CUDA {s.driver.cuda_driver_version} the "
            f"driver supports: "
            + (
                "its binaries will not run on this driver"
                if major_newer
                else "code it builds only runs through minor-version compatibility, and its PTX cannot be "
                "JIT-compiled by this driver"
            ),
            f"upgrade the driver to one that supports CUDA {mine[0]}.{mine[1]}, or build with an nvcc no newer "
            f"than {s.driver.cuda_driver_version}",
            "cuda",
        )


@check
def toolkits_disagree(s: Snapshot) -> Iterable[Finding]:
    on_path = next((t for t in s.cuda_toolkits if "PATH" in t.found_via), None)
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = next((t for t in s.cuda_toolkits if var in t.found_via), None)
        if on_path and home and on_path is not home and _major_minor(on_path.version) != _major_minor(home.version):
            yield Finding(
                "cuda.path_home_disagree",
                "warn",
                f"nvcc on PATH is {on_path.version} ({on_path.nvcc}) but {var} points at "
                f"{home.version} ({home.nvcc}): builds pick one or the other",
                f"make them agree: export {var}=<toolkit> and put $" + var + "/bin first on PATH",
                "cuda",
            )


# -- GPUs ------------------------------------------------------------------------------------------


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
