"""The probe over the replay backend: the same code path as on a real GPU, driven by recorded state."""

from __future__ import annotations

import copy
import dataclasses

import pynvml
import pytest

from provision import probe as probe_mod
from provision.nvmlfields import classify_init_failure
from provision.probe import probe_gpus, relevant_env
from provision.replay import ReplayNvml
from provision.snapshot import DriverInfo, Snapshot
from tests.conftest import load_snapshot, snapshot_files


def _fake_root(tmp_path, *, kmod: str | None = None, lib: str | None = None, flavor_open: bool = True):
    if kmod:
        d = tmp_path / "proc/driver/nvidia"
        d.mkdir(parents=True)
        desc = "NVIDIA UNIX Open Kernel Module for x86_64" if flavor_open else "NVIDIA UNIX x86_64 Kernel Module"
        (d / "version").write_text(
            f"NVRM version: {desc}  {kmod}  Release Build  (dvs-builder@U16-I3-B03-4-3)  Thu Oct 10 2024\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
        )
    if lib:
        d = tmp_path / "usr/lib/x86_64-linux-gnu"
        d.mkdir(parents=True)
        (d / f"libnvidia-ml.so.{lib}").write_bytes(b"")
        (d / "libnvidia-ml.so.1").symlink_to(f"libnvidia-ml.so.{lib}")
    (tmp_path / "proc").mkdir(exist_ok=True)
    return tmp_path


def _comparable(gpu):
    g = copy.deepcopy(gpu)
    # reasons that were never NVML errors (e.g. "not_recorded") come back as NVML's "Unknown Error"
    g.unavailable = {k: v for k, v in g.unavailable.items() if v in ("not_supported", "no_permission")}
    g.unavailable.pop("set_power_limit", None)  # a setter property, not a probed field
    return g


@pytest.mark.parametrize("path", snapshot_files(), ids=lambda p: p.name)
def test_probe_over_replay_reproduces_the_snapshot(path, tmp_path):
    snap = Snapshot.load(path)
    driver, gpus = probe_gpus(ReplayNvml(snap), root=_fake_root(tmp_path))
    assert driver.nvml.ok
    assert driver.driver_version == snap.driver.driver_version
    assert driver.nvml_version == snap.driver.nvml_version
    assert driver.cuda_driver_version == snap.driver.cuda_driver_version
    assert [_comparable(g) for g in gpus] == [_comparable(g) for g in snap.gpus]


def test_one_gpu_not_supporting_power_does_not_sink_the_probe(tmp_path):
    snap = load_snapshot("a100x2")
    snap.gpus[1].unavailable["power_limit_w"] = "not_supported"
    snap.gpus[1].unavailable["power_draw_w"] = "no_permission"
    _, gpus = probe_gpus(ReplayNvml(snap), root=_fake_root(tmp_path))
    assert gpus[0].power_limit_w == 400.0
    assert gpus[1].power_limit_w is None
    assert gpus[1].unavailable["power_limit_w"] == "not_supported"
    assert gpus[1].unavailable["power_draw_w"] == "no_permission"
    assert gpus[1].temperature_c == snap.gpus[1].temperature_c


class _OldBindings(ReplayNvml):
    """Bindings from before NVML 12: no TemperatureV, no ClocksEventReasons, no memory v2."""

    nvmlMemory_v2 = None

    def __getattribute__(self, name):
        if name in ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetCurrentClocksEventReasons"):
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_old_bindings_fall_back_to_deprecated_functions(tmp_path):
    snap = load_snapshot("h100")
    _, gpus = probe_gpus(_OldBindings(snap), root=_fake_root(tmp_path))
    g = gpus[0]
    assert g.temperature_c == 35
    assert g.clock_event_reasons == ["gpu_idle"]
    assert "temperature_c" not in g.unavailable and "clock_event_reasons" not in g.unavailable
    # memory v1 counts the driver's reservation as used
    assert g.vram_used_mib == 480 and g.vram_reserved_mib == 0


class _FunctionMissingInDriver(ReplayNvml):
    def nvmlDeviceGetMigMode(self, h):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    def nvmlDeviceGetPcieThroughput(self, h, counter):  # pragma: no cover - not called by the probe
        raise AssertionError("the probe must not call slow PCIe throughput counters")

    def nvmlDeviceGetComputeMode(self, h):
        raise OSError("ctypes exploded")


def test_missing_functions_and_binding_bugs_are_recorded_not_raised(tmp_path):
    _, gpus = probe_gpus(_FunctionMissingInDriver(load_snapshot("h100")), root=_fake_root(tmp_path))
    assert gpus[0].mig_enabled is None
    assert gpus[0].unavailable["mig_enabled"].startswith("not_in_driver")
    assert gpus[0].unavailable["compute_mode"] == "error: OSError: ctypes exploded"
    assert gpus[0].power_limit_w == 700.0


@pytest.mark.parametrize(
    "kind, kmod, lib, expect",
    [
        ("library_not_found", None, None, "no NVIDIA driver installed"),
        (
            "library_not_found",
            "550.54.14",
            None,
            "kernel module 550.54.14 is loaded but libnvidia-ml.so.1 is missing",
        ),
        ("driver_not_loaded", None, "550.54.14", "kernel module is not loaded"),
        (
            "version_mismatch",
            "550.54.14",
            "550.90.07",
            "kernel module 550.54.14, userspace library 550.90.07",
        ),
        ("no_permission", "550.54.14", "550.54.14", "no permission"),
        ("unknown", "550.54.14", "550.54.14", "NVML failed to start"),
    ],
)
def test_nvml_init_failures_are_classified(kind, kmod, lib, expect, tmp_path):
    snap = load_snapshot("rtx4090")
    snap.driver.nvml = dataclasses.replace(snap.driver.nvml, ok=False, kind=kind)
    driver, gpus = probe_gpus(ReplayNvml(snap), root=_fake_root(tmp_path, kmod=kmod, lib=lib))
    assert gpus == []
    assert driver.nvml.ok is False
    assert driver.nvml.kind == kind
    assert expect in driver.nvml.message
    assert driver.kernel_module_version == kmod
    assert driver.nvml_library_version == lib


def test_driver_loaded_but_no_gpu(tmp_path):
    snap = load_snapshot("rtx4090")
    snap.gpus = []
    driver, gpus = probe_gpus(ReplayNvml(snap), root=_fake_root(tmp_path, kmod="570.133.07"))
    assert gpus == [] and driver.nvml.kind == "no_gpu"


def test_real_pynvml_without_a_driver_is_classified(tmp_path):
    """This machine has no NVIDIA driver: the real bindings must report library_not_found, not raise."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        pass
    else:  # pragma: no cover - only on GPU hosts
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is present here")
    driver, gpus = probe_gpus(pynvml, root=_fake_root(tmp_path))
    assert (driver.nvml.kind, gpus) == ("library_not_found", [])


def test_classify_unknown_exception():
    status = classify_init_failure(OSError("libnvidia-ml.so.1: invalid ELF header"), DriverInfo())
    assert status.kind == "unknown" and "invalid ELF header" in status.message


def test_relevant_env_keeps_only_gpu_related_variables():
    env = {
        "CUDA_VISIBLE_DEVICES": "0",
        "OLLAMA_HOST": "0.0.0.0",
        "VLLM_USE_V1": "1",
        "HOME": "/root",
        "SECRET": "x",
    }
    assert relevant_env(env) == {"CUDA_VISIBLE_DEVICES": "0", "OLLAMA_HOST": "0.0.0.0", "VLLM_USE_V1": "1"}


def test_full_probe_with_replay_backend_runs_everything(tmp_path, monkeypatch, snapshot_copy):
    state = snapshot_copy("l4")
    monkeypatch.setenv("GPUPROV_NVML_REPLAY", str(state))
    snap = probe_mod.probe()
    assert snap.origin == "live"
    assert snap.gpus[0].name == "NVIDIA L4"
    assert snap.python.packages["nvidia-ml-py"].version
    assert Snapshot.from_dict(snap.to_dict()) == snap
