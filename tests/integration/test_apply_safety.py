"""gpuprov apply / revert --root DIR, end to end with the real ansible-playbook: one apply at a time,
image trees that touch no GPU (and need no driver), revert that puts back links, owners, groups and
modes, and no write out of the tree through a link in it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision.ansiblerun import run_playbook
from provision.plan import BOOT_UNIT, BOOT_UNIT_FILE, MODPROBE_FILE, SETTINGS_FILE
from tests.integration.test_apply import Host
from tests.integration.test_apply import pytestmark as apply_marks

pytestmark = apply_marks
IMAGE_NOTE = "image tree: GPU settings are applied by the boot unit at first boot"


@contextlib.contextmanager
def held_lock(state: Path) -> Iterator[None]:
    """Hold gpuprov's apply lock as an apply in progress does: flock on STATE/apply.lock, its pid inside."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "apply.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.truncate(0)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield


def image(tmp_path: Path, snapshot: str = "rtx4090") -> Host:
    """An image tree built on a machine without an NVIDIA driver: no replay, nothing to replay from."""
    host = Host(tmp_path, snapshot, ollama=snapshot == "rtx4090")  # the built-in rtx4090 serves Ollama
    for name in ("GPUPROV_NVML_REPLAY", "GPUPROV_NVML_REPLAY_ROOT"):
        host.env.pop(name, None)
    return host


def _tree(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, link target or content, owner, group and mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        what = os.readlink(p) if p.is_symlink() else p.read_text() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), what, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return out


@pytest.mark.slow
def test_a_second_apply_or_revert_waits_then_fails_changing_nothing(tmp_path: Path) -> None:
    host = Host(tmp_path, "rtx4090", ollama=True)
    state = tmp_path / "state"
    with held_lock(state):  # an apply in progress: this process
        for args in (("apply", "rtx4090"), ("revert",)):
            proc = host.gpuprov(*args, "--root", str(host.root))
            assert proc.returncode != 0
            (line,) = proc.stderr.strip().splitlines()  # one line, no traceback
            assert f"another gpuprov apply is running (pid {os.getpid()})" in line
        # --check changes nothing: it runs beside an apply
        check = host.gpuprov("apply", "rtx4090", "--root", str(host.root), "--check", "--json")
        assert check.returncode == 0, check.stderr
        assert host.tree() == [] and host.calls() == []
        assert not (state / "previous.json").exists() and not (state / "profile.json").exists()

        # the playbook run directly by ansible-playbook is refused by its first task, too
        extra = {
            "gpuprov_gpu_action": "apply",
            "gpuprov_gpu_profile": "rtx4090",
            "gpuprov_gpu_root": str(host.root),
            "gpuprov_gpu_state_dir": str(state),
        }
        direct = run_playbook("local.yml", extra, env=host.env)
        assert direct.returncode != 0
        assert any(f"another gpuprov apply is running (pid {os.getpid()})" in r.msg for r in direct.failed)
        assert host.tree() == [] and host.calls() == []

    assert host.apply_json("apply", "rtx4090")["failed"] == 0  # the lock was released: it goes through now


@pytest.mark.slow
def test_image_tree_without_a_driver_gets_the_settings_for_its_boot_unit(tmp_path: Path) -> None:
    host = image(tmp_path)
    plan = host.gpuprov("plan", "rtx4090", "--root", str(host.root))
    assert plan.returncode == 0, plan.stderr
    assert IMAGE_NOTE in " ".join(plan.stdout.split())

    applied = host.apply_json("apply", "rtx4090")
    assert applied["failed"] == 0
    assert any(note.startswith(IMAGE_NOTE) for note in applied["notes"])
    settings = json.loads(host.file(SETTINGS_FILE).read_text())
    assert settings["gpus"] == [] and settings["image"]["gpu"]["power_limit_w"] == 250.0
    assert (host.root / "etc/systemd/system/multi-user.target.wants" / BOOT_UNIT).is_symlink()
    assert host.calls() == []  # the replay file was never even named

    # a replay named but unreadable: any NVML call would fail the run
    proc = host.gpuprov(
        "apply", "rtx4090", "--root", str(host.root), "--json", GPUPROV_NVML_REPLAY=str(tmp_path / "no-such-gpu.json")
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["changed"] == 0
    assert host.apply_json("revert")["failed"] == 0
    assert not host.file(SETTINGS_FILE).exists()


@pytest.mark.slow
def test_revert_restores_a_link_and_a_unit_owned_by_nobody(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving files to nobody needs root")
    host = image(tmp_path, "rtx4090")
    # the image ships the settings file as a link into /usr/share, and an old boot unit owned by nobody
    shipped = host.file("/usr/share/gpuprov/gpu-settings.json")
    shipped.parent.mkdir(parents=True)
    shipped.write_text('{"profile": "vendor", "gpus": []}\n')
    link = host.file(SETTINGS_FILE)
    link.parent.mkdir(parents=True)
    link.symlink_to("/usr/share/gpuprov/gpu-settings.json")
    unit = host.file(BOOT_UNIT_FILE)
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\nDescription=an older one\n")
    unit.chmod(0o640)
    os.chown(unit, 65534, 65534)
    before = _tree(host.root)

    assert host.apply_json("apply", "rtx4090")["failed"] == 0
    assert not link.is_symlink() and '"profile": "rtx4090"' in link.read_text()
    assert shipped.read_text() == '{"profile": "vendor", "gpus": []}\n'  # replaced, not written through
    assert (unit.stat().st_uid, stat.S_IMODE(unit.stat().st_mode)) == (0, 0o644)

    assert host.apply_json("revert")["failed"] == 0
    after = _tree(host.root)
    assert {k: v for k, v in after.items() if not k.startswith("var")} == before  # gpuprov's state stays
    assert host.apply_json("revert")["changed"] == 0


@pytest.mark.slow
def test_links_in_the_image_never_lead_out_of_it(tmp_path: Path) -> None:
    host = image(tmp_path, "rtx4090-laptop")
    outside = tmp_path / "outside"
    (outside / "etc/gpuprov").mkdir(parents=True)
    (outside / "systemd").mkdir()
    (host.root / "etc").mkdir()
    # an absolute link (the build machine's path), and a relative one climbing past the root
    (host.root / "etc/gpuprov").symlink_to(outside / "etc/gpuprov")
    (host.root / "etc/systemd").symlink_to("../../../../../../../.." + str(outside / "systemd"))
    applied = host.apply_json("apply", "rtx4090-laptop")
    assert applied["failed"] == 0
    assert sorted(outside.rglob("*")) == [outside / "etc", outside / "etc/gpuprov", outside / "systemd"]
    # they mean the image's own paths, as they do when it boots
    inside = host.root / str(outside).lstrip("/")
    assert (inside / "etc/gpuprov/gpu-settings.json").is_file()
    assert (inside / "systemd/system" / BOOT_UNIT).is_file()
    assert (inside / "systemd/system/multi-user.target.wants" / BOOT_UNIT).is_symlink()
    assert host.apply_json("revert")["failed"] == 0
    assert sorted(outside.rglob("*")) == [outside / "etc", outside / "etc/gpuprov", outside / "systemd"]


@pytest.mark.slow
def test_a_link_to_the_hosts_directory_is_refused_before_any_change(tmp_path: Path) -> None:
    """The issue's case: img/etc/modprobe.d -> /etc/modprobe.d. Inside the image it is a link to itself."""
    host = image(tmp_path, "rtx4090-laptop")
    (host.root / "etc").mkdir()
    (host.root / "etc/modprobe.d").symlink_to("/etc/modprobe.d")
    host_file = Path("/etc/modprobe.d") / Path(MODPROBE_FILE).name
    existed = host_file.exists()
    proc = host.gpuprov("apply", "rtx4090-laptop", "--root", str(host.root))
    assert proc.returncode != 0
    assert "too many levels of symbolic links" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert host.tree() == ["etc", "etc/modprobe.d"]
    assert host_file.exists() == existed
