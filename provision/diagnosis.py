"""Diagnosis: pure functions of a snapshot that return findings.

A check is a function ``Snapshot -> Iterable[Finding]`` decorated with :func:`check`. This module holds the
registry and the checks of the driver, the environment, CUDA and the Python stack; the GPUs' own state
(:mod:`provision.gpuchecks`) and other parts of gpuprov (the compatibility matrix, the serving units)
contribute checks through the same registry: their module is listed in :data:`CHECK_MODULES` and their
functions decorated with :func:`check`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from provision.snapshot import Snapshot
from provision.versions import major_minor as _major_minor

SEVERITIES = ("ok", "info", "warn", "error")

#: modules whose import registers more checks (kept lazy: imported on the first diagnose())
CHECK_MODULES: list[str] = ["provision.gpuchecks", "provision.compat.findings", "provision.servingcheck"]


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
