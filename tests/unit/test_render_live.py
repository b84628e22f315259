"""gpuprov render never writes over a live system: its tree has placeholders and nothing is recorded for
revert, so over / (or a running system's tree) it would replace real keys and units unrecorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from provision.rendertree import live_system

PY = "/opt/gpuprov/bin/python"


def render(tmp_path: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("GPUPROV_NVML_REPLAY", None)
    return subprocess.run(
        [sys.executable, "-m", "provision", "render", "rtx4090-laptop", "--out", str(out), "--python", PY],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def _systemd_running(d: Path) -> None:
    (d / "run/systemd/system").mkdir(parents=True)


def _proc_mounted(d: Path) -> None:
    (d / "etc").mkdir()
    (d / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (d / "proc/1").mkdir(parents=True)


@pytest.mark.parametrize(
    ("make", "why"),
    [(_systemd_running, "a running systemd"), (_proc_mounted, "/proc mounted")],
    ids=["run-systemd-system", "os-release-and-proc"],
)
def test_a_tree_that_holds_a_live_system_is_refused_and_left_alone(tmp_path: Path, make, why: str) -> None:
    live = tmp_path / "live"
    live.mkdir()
    make(live)
    before = listing(live)
    proc = render(tmp_path, live)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and why in proc.stderr and "Traceback" not in proc.stderr
    assert listing(live) == before  # nothing written: no placeholder key, no unit


def test_the_real_root_is_refused_also_through_a_link(tmp_path: Path) -> None:
    link = tmp_path / "slash"
    link.symlink_to("/")
    for out in (Path("/"), link, Path("/etc/..")):
        proc = render(tmp_path, out)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "this machine's root directory" in proc.stderr and proc.stderr.count("\n") == 1
    assert live_system(tmp_path) is None


def test_an_image_tree_without_a_running_system_is_rendered(tmp_path: Path) -> None:
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (image / "etc/os-release").write_text("ID=debian\n")
    (image / "proc").mkdir()  # an unmounted /proc: empty, as debootstrap leaves it
    proc = render(tmp_path, image)
    assert proc.returncode == 0, proc.stderr
    assert (image / "etc/gpuprov/serving/vllm.env").is_file()
    assert live_system(tmp_path / "not-there-yet") is None
