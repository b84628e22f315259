"""Every check: the mutation that must trigger it, and the healthy snapshot that must not."""

from __future__ import annotations

import dataclasses

import pytest

from provision import diagnosis
from provision.diagnosis import Finding, diagnose, exit_code
from provision.snapshot import CudaToolkit, NvmlStatus, PackageInfo
from tests.conftest import load_snapshot


def _set_gpu(**kw):
    def mutate(s):
        for k, v in kw.items():
            setattr(s.gpus[0], k, v)

    return mutate


def _nvml(kind):
    def mutate(s):
        s.driver.nvml = NvmlStatus(False, kind, f"NVML says {kind}")
        s.gpus = []

    return mutate


def _env(**kw):
    return lambda s: s.env.update(kw)


def _torch_cpu(s):
    s.python.packages["torch"] = PackageInfo("torch", "2.7.1", None)
    s.python.torch_cuda = None


def _llama_cpu(s):
    s.python.packages["llama-cpp-python"] = PackageInfo("llama-cpp-python", "0.3.16")
    s.python.llama_cpp_cuda = False


def _nvcc(version, via=("PATH",)):
    return lambda s: s.cuda_toolkits.append(CudaToolkit(f"/usr/local/cuda-{version}/bin/nvcc", version, list(via)))


def _two_toolkits(s):
    s.cuda_toolkits[:] = [
        CudaToolkit("/usr/local/cuda-12.1/bin/nvcc", "12.1.105", ["PATH"]),
        CudaToolkit("/usr/local/cuda-11.8/bin/nvcc", "11.8.89", ["CUDA_HOME"]),
    ]


def _headless(s):
    s.host.graphical_session = False
    s.gpus[0].display_active = False
    s.gpus[0].persistence_mode = False


def _pynvml(s):
    s.python.pynvml_providers = ["nvidia-ml-py", "pynvml"]


def _python_error(s):
    s.python.error = "/opt/x/bin/python: no such interpreter"


# (id, severity, base snapshot, mutation)
CASES = [
    ("driver.library_not_found", "error", "rtx4090", _nvml("library_not_found")),
    ("driver.driver_not_loaded", "error", "rtx4090", _nvml("driver_not_loaded")),
    ("driver.version_mismatch", "error", "rtx4090", _nvml("version_mismatch")),
    ("driver.no_permission", "error", "rtx4090", _nvml("no_permission")),
    ("driver.no_gpu", "error", "rtx4090", _nvml("no_gpu")),
    ("env.cuda_visible_devices.hides_all", "error", "rtx4090", _env(CUDA_VISIBLE_DEVICES="")),
    ("env.cuda_visible_devices.hides_all", "error", "rtx4090", _env(CUDA_VISIBLE_DEVICES="-1")),
    ("env.cuda_visible_devices.missing", "warn", "rtx4090", _env(CUDA_VISIBLE_DEVICES="0,1")),
    ("env.cuda_visible_devices.missing", "warn", "rtx4090", _env(CUDA_VISIBLE_DEVICES="0,GPU-deadbeef")),
    # CUDA stops at the first invalid entry: when that is the first one, it sees no GPU at all
    ("env.cuda_visible_devices.hides_all", "error", "rtx4090", _env(CUDA_VISIBLE_DEVICES="GPU-deadbeef")),
    ("env.cuda_visible_devices.hides_all", "error", "rtx4090", _env(CUDA_VISIBLE_DEVICES="1")),
    ("env.cuda_visible_devices.hides_all", "error", "rtx4090", _env(CUDA_VISIBLE_DEVICES="MIG-4b3c0e2a-1d2f")),
    ("python.torch_cpu_only", "error", "rtx4090", _torch_cpu),
    ("python.llama_cpp_cpu_only", "warn", "rtx4090", _llama_cpu),
    ("python.pynvml_conflict", "warn", "rtx4090", _pynvml),
    ("python.unreadable", "error", "rtx4090", _python_error),
    ("cuda.nvcc_newer_than_driver", "warn", "rtx4090", _nvcc("12.9.86")),  # driver: CUDA 12.8
    ("cuda.nvcc_newer_than_driver", "error", "rtx4090", _nvcc("13.0.88")),
    ("cuda.path_home_disagree", "warn", "rtx4090", _two_toolkits),
    ("gpu.throttling", "warn", "rtx4090", _set_gpu(clock_event_reasons=["hw_thermal_slowdown"])),
    ("gpu.throttling", "warn", "rtx4090", _set_gpu(clock_event_reasons=["sw_power_cap"])),
    ("gpu.near_slowdown_temperature", "warn", "rtx4090", _set_gpu(temperature_c=84)),
    ("gpu.persistence_off", "warn", "rtx4090", _headless),
    ("gpu.power_limit_lowered", "info", "rtx4090", _set_gpu(power_limit_w=250.0)),
    ("gpu.pcie_narrow", "warn", "rtx4090", _set_gpu(pcie_width_current=8)),
    ("gpu.mig_enabled", "warn", "h100", _set_gpu(mig_enabled=True)),
    ("gpu.ecc_disabled", "warn", "h100", _set_gpu(ecc_enabled=False)),
]


def _ids(findings):
    return {f.id for f in findings}


@pytest.mark.parametrize("fid, severity, base, mutate", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_check_fires_on_its_mutation_and_not_on_the_healthy_base(fid, severity, base, mutate):
    healthy = load_snapshot(base)
    assert fid not in _ids(diagnose(healthy)), f"{fid} fires on the healthy {base} snapshot"
    broken = load_snapshot(base)
    mutate(broken)
    hits = [f for f in diagnose(broken) if f.id == fid]
    assert hits, f"{fid} did not fire"
    assert {f.severity for f in hits} == {severity}
    for f in hits:
        assert f.message and "\n" not in f.message
        if severity != "ok":
            assert f.remedy, f"{fid} gives no remedy"


def test_near_misses_do_not_fire():
    s = load_snapshot("rtx4090")
    s.gpus[0].temperature_c = 81  # slowdown at 87: 6 °C away
    s.gpus[0].power_limit_w = 449.8  # rounding, not a lowered limit
    s.gpus[0].clock_event_reasons = ["gpu_idle", "applications_clocks_setting"]
    s.env["CUDA_VISIBLE_DEVICES"] = "0"
    s.cuda_toolkits.append(CudaToolkit("/usr/local/cuda-12.8/bin/nvcc", "12.8.93", ["PATH"]))
    s.gpus[0].ecc_enabled = False  # a GeForce card: ECC off is normal
    ids = _ids(diagnose(s))
    assert not ids & {
        "gpu.near_slowdown_temperature",
        "gpu.power_limit_lowered",
        "gpu.throttling",
        "env.cuda_visible_devices.missing",
        "cuda.nvcc_newer_than_driver",
        "gpu.ecc_disabled",
    }


def test_persistence_off_is_fine_with_a_desktop_session():
    s = load_snapshot("rtx4090")  # graphical desktop, display attached
    s.gpus[0].persistence_mode = False
    assert "gpu.persistence_off" not in _ids(diagnose(s))


def test_every_registered_check_is_covered_by_a_case():
    covered = {c[0].split(".")[0] for c in CASES}
    assert covered == {"driver", "env", "python", "cuda", "gpu"}
    builtin = {"provision.diagnosis", "provision.gpuchecks"}
    names = {fn.__name__ for fn in diagnosis.registered_checks() if fn.__module__ in builtin}
    # checks that only report "ok" are exercised by the healthy snapshots
    assert names >= {
        "nvml_status",
        "cuda_visible_devices",
        "torch_cpu_only",
        "llama_cpp_without_cuda",
        "pynvml_clobbered",
        "nvcc_newer_than_driver",
        "toolkits_disagree",
        "throttling",
        "persistence_headless",
        "power_below_default",
        "pcie_width",
        "mig_enabled",
        "ecc_datacenter",
    }


def test_exit_code_contract():
    warn = Finding("a", "warn", "m")
    err = Finding("b", "error", "m")
    assert exit_code([]) == 0
    assert exit_code([warn]) == 0
    assert exit_code([warn], strict=True) == 1
    assert exit_code([err]) == 1


def test_findings_are_sorted_worst_first():
    s = load_snapshot("rtx4090")
    _torch_cpu(s)
    s.gpus[0].power_limit_w = 250.0
    sev = [f.severity for f in diagnose(s)]
    order = {"error": 0, "warn": 1, "info": 2, "ok": 3}
    assert sev == sorted(sev, key=order.__getitem__)


def test_findings_serialise():
    f = Finding("x.y", "warn", "msg", "fix", "gpu0")
    assert (
        f.to_dict()
        == dataclasses.asdict(f)
        == {"id": "x.y", "severity": "warn", "message": "msg", "remedy": "fix", "subject": "gpu0"}
    )


def test_a_crashing_check_is_a_finding_not_the_end_of_the_report(monkeypatch):
    def broken(s):
        raise KeyError("surprise")
        yield  # pragma: no cover

    monkeypatch.setattr(diagnosis, "_CHECKS", [*diagnosis.registered_checks(), broken])
    monkeypatch.setattr(diagnosis, "CHECK_MODULES", [])
    findings = diagnose(load_snapshot("rtx4090"))
    failed = [f for f in findings if f.id == "doctor.check_failed.broken"]
    assert len(failed) == 1 and failed[0].severity == "warn" and "KeyError" in failed[0].message
    assert len(findings) > 1  # the other checks still ran


@pytest.mark.parametrize(
    "name, fires",
    [
        ("NVIDIA H100 80GB HBM3", True),
        ("NVIDIA A2", True),  # the regex this replaced missed the catalog's A2, A800, L20, B300
        ("NVIDIA L20", True),
        ("NVIDIA A800 80GB PCIe", True),
        ("NVIDIA B300", True),
        ("NVIDIA RTX A6000", False),  # a workstation card with ECC: off is the shipped default
        ("NVIDIA GeForce RTX 4090", False),
        ("NVIDIA Made-Up 9000", False),  # the catalog does not know it: no claim
    ],
)
def test_ecc_off_warns_on_the_catalogs_datacenter_gpus_only(name, fires):
    from provision.gpus import lookup_gpu

    s = load_snapshot("h100")
    s.gpus[0].name = name
    s.gpus[0].ecc_enabled = False
    assert ("gpu.ecc_disabled" in _ids(diagnose(s))) is fires
    spec = lookup_gpu(name)
    assert (spec is not None and spec.datacenter) is fires
