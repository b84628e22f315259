"""gpuprov wait-gpu: ready when NVML sees the GPUs a server needs, a clear reason and exit 1 when not —
on the replay backend (the probe's real code path over recorded snapshots), with a fake clock."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.gpuready import MAX_WAIT_S, MIN_INTERVAL_S, GpuNotReady, check, interval_problem, wait_for_gpus
from provision.replay import ReplayNvml
from tests.conftest import SNAPSHOTS


def state(tmp_path: Path, name: str = "a100x2", **driver: object) -> Path:
    data = json.loads((SNAPSHOTS / f"{name}.constructed.json").read_text())
    if driver:
        data["driver"]["nvml"] = {"ok": False, **driver}
        data["gpus"] = []
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(data))
    return path


def backend(path: Path):
    return lambda: ReplayNvml.from_state_file(str(path))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_ready_names_the_gpus(tmp_path: Path) -> None:
    result = check(backend(state(tmp_path))(), (1,), root=tmp_path)
    assert result.ready and result.detail == "GPU 1 (NVIDIA A100-SXM4-80GB)"
    assert check(backend(state(tmp_path))(), (), root=tmp_path).detail.count("GPU") == 2


def test_a_missing_gpu_times_out_with_the_reason(tmp_path: Path) -> None:
    clock = Clock()
    with pytest.raises(GpuNotReady) as exc:
        wait_for_gpus(
            (0, 2),
            timeout_s=5,
            interval_s=1,
            backend=backend(state(tmp_path)),
            root=tmp_path,
            clock=clock,
            sleep=clock.sleep,
        )
    assert exc.value.message == "GPUs not ready after 5 s: NVML sees GPU 0, 1, not GPU 2"
    assert exc.value.exit_code == 1
    assert clock.sleeps == [1, 1, 1, 1, 1]


def test_driver_not_loaded_is_waited_for_then_reported(tmp_path: Path) -> None:
    clock = Clock()
    path = state(tmp_path, kind="driver_not_loaded", message="the NVIDIA kernel module is not loaded")
    with pytest.raises(GpuNotReady, match="NVML: "):
        wait_for_gpus(
            (), timeout_s=2.5, interval_s=1, backend=backend(path), root=tmp_path, clock=clock, sleep=clock.sleep
        )
    assert clock.sleeps == [1, 1, 0.5]


def test_ready_once_the_driver_comes_up(tmp_path: Path) -> None:
    """The boot race: NVML fails for a while, then the GPU appears."""
    clock = Clock()
    down = state(tmp_path, kind="driver_not_loaded", message="not loaded")
    up = tmp_path / "up.json"
    up.write_text((SNAPSHOTS / "rtx4090.constructed.json").read_text())
    answers = iter([down, down, up])
    line = wait_for_gpus(
        (0,),
        timeout_s=30,
        interval_s=2,
        backend=lambda: ReplayNvml.from_state_file(str(next(answers))),
        root=tmp_path,
        clock=clock,
        sleep=clock.sleep,
    )
    assert line == "ready after 4.0 s: GPU 0 (NVIDIA GeForce RTX 4090)"


def test_missing_uvm_device_is_not_ready_where_the_driver_has_its_control_device(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/nvidiactl").touch()
    result = check(backend(state(tmp_path))(), (), root=tmp_path)
    assert not result.ready and "/dev/nvidia-uvm is missing" in result.detail
    (tmp_path / "dev/nvidia-uvm").touch()
    assert check(backend(state(tmp_path))(), (), root=tmp_path).ready


def cli(*args: str, replay: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPUPROV_NVML_REPLAY": str(replay)}
    return subprocess.run(
        [sys.executable, "-m", "provision", "wait-gpu", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_cli_exit_codes(tmp_path: Path) -> None:
    replay = state(tmp_path)
    ok = cli("--gpus", "0,1", replay=replay)
    assert ok.returncode == 0 and ok.stdout.startswith("ready after ")
    late = cli("--gpus", "3", "--timeout-s", "0", replay=replay)
    assert (
        late.returncode == 1
        and late.stderr == "gpuprov: error: GPUs not ready after 0 s: NVML sees GPU 0, 1, not GPU 3\n"
    )
    bad = cli("--gpus", "zero", replay=replay)
    assert bad.returncode == 2 and "expected GPU indices" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--timeout-s", "inf", "--interval-s", "inf"), "--timeout-s inf"),
        (("--timeout-s", "nan"), "--timeout-s nan"),
        (("--timeout-s", "-1"), "--timeout-s -1"),
        (("--timeout-s", "1e12"), "--timeout-s 1e+12"),
        (("--interval-s", "inf"), "--interval-s inf"),
        (("--interval-s", "nan"), "--interval-s nan"),
        (("--interval-s", "0"), "--interval-s 0"),
        (("--interval-s", "1e-300"), "--interval-s 1e-300"),
    ],
)
def test_cli_refuses_timeouts_that_overflow_or_never_end(tmp_path: Path, args: tuple[str, ...], flag: str) -> None:
    """inf overflowed time.sleep (a traceback); nan compares false with everything, so the wait never ended."""
    proc = cli(*args, replay=state(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"gpuprov: error: {flag}: expected a number of seconds")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@given(timeout_s=st.floats(allow_nan=True, allow_infinity=True), interval_s=st.floats(allow_nan=True))
def test_only_finite_bounded_waits_are_accepted(timeout_s: float, interval_s: float) -> None:
    problem = interval_problem(timeout_s, interval_s)
    bounded = (
        math.isfinite(timeout_s)
        and 0 <= timeout_s <= MAX_WAIT_S
        and math.isfinite(interval_s)
        and MIN_INTERVAL_S <= interval_s <= MAX_WAIT_S
    )
    assert (problem is None) == bounded
    if problem is not None:
        with pytest.raises(ValueError, match="expected a number of seconds"):
            wait_for_gpus((), timeout_s=timeout_s, interval_s=interval_s, backend=lambda: None)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the same patch serves every example
@given(timeout_s=st.floats(0, 600), interval_s=st.floats(MIN_INTERVAL_S, 600))
def test_an_accepted_wait_ends_at_its_timeout(
    monkeypatch: pytest.MonkeyPatch, timeout_s: float, interval_s: float
) -> None:
    """A GPU that never comes: the wait gives up once the (fake) clock passes the timeout, never later."""
    import provision.gpuready as gpuready

    monkeypatch.setattr(gpuready, "check", lambda *a, **k: gpuready.Readiness(False, "no GPU"))
    clock = Clock()
    with pytest.raises(GpuNotReady, match="no GPU"):
        wait_for_gpus(
            (), timeout_s=timeout_s, interval_s=interval_s, backend=lambda: None, clock=clock, sleep=clock.sleep
        )
    assert timeout_s <= clock.now <= timeout_s + 1e-6
