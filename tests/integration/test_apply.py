"""gpuprov apply / revert end to end: the real ansible-playbook on localhost, the GPU replayed from a
snapshot (tests/data/snapshots: which GPU each came from is in its "note"), files and units written
into a throw-away root. Asserts on what the replay backend recorded as really set."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision.plan import BOOT_UNIT, BOOT_UNIT_FILE, MODPROBE_FILE, SETTINGS_FILE
from tests.conftest import SNAPSHOTS, gathered

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the replay's NVML setters, like the real ones, need root"),
    pytest.mark.skipif(
        not (Path(sys.executable).parent / "ansible-playbook").exists() and shutil.which("ansible-playbook") is None,
        reason="ansible-playbook not installed",
    ),
]


#: where Ollama's installer puts its binary (provision.engines.OLLAMA_BINARIES): the built-in rtx4090 and rtx4080
#: serve Ollama, and an Ollama profile plans only where Ollama is installed
OLLAMA_BINARY = "usr/local/bin/ollama"


class Host:
    def __init__(self, tmp_path: Path, snapshot: str, *, ollama: bool = False) -> None:
        self.root = tmp_path / "root"
        self.root.mkdir()
        #: what the test put in the tree before gpuprov ran (Ollama's binary): not listed by :meth:`tree`
        self.fixtures: set[str] = set()
        if ollama:
            (self.root / OLLAMA_BINARY).parent.mkdir(parents=True)
            (self.root / OLLAMA_BINARY).write_text("#!/bin/sh\necho 'ollama version is 0.12.3'\n")
            (self.root / OLLAMA_BINARY).chmod(0o755)
            self.fixtures = {"usr", "usr/local", "usr/local/bin", OLLAMA_BINARY}
        self.gpu = tmp_path / "gpu.json"
        shutil.copy(SNAPSHOTS / f"{snapshot}.constructed.json", self.gpu)
        self.env = {
            **os.environ,
            "GPUPROV_NVML_REPLAY": str(self.gpu),
            # the throw-away root stands for the replayed host's / (not an image tree): GPU settings applied
            "GPUPROV_NVML_REPLAY_ROOT": str(self.root),
            "GPUPROV_STATE_DIR": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "COLUMNS": "200",
        }
        self.env.pop("GPUPROV_NVML_REPLAY_AS_USER", None)

    def gpuprov(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "provision", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def apply_json(self, *args: str) -> dict:
        proc = self.gpuprov(*args, "--root", str(self.root), "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    def calls(self) -> list[dict]:
        return json.loads(self.gpu.read_text()).get("calls", [])

    def gpu0(self) -> dict:
        data = json.loads(self.gpu.read_text())
        return data.get("snapshot", data)["gpus"][0]

    def file(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def tree(self) -> list[str]:
        """What is in the tree besides the test's own fixtures."""
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if str(p.relative_to(self.root)) not in self.fixtures
        )


@pytest.mark.slow
def test_apply_twice_then_revert_twice_rtx4090(tmp_path: Path) -> None:
    host = Host(tmp_path, "rtx4090", ollama=True)
    first = host.apply_json("apply", "rtx4090")
    # 4 for the GPU settings and boot unit, 1 for the Ollama drop-in of the profile's serving section
    assert first["failed"] == 0 and first["changed"] == 5
    assert host.file("/etc/systemd/system/ollama.service.d/gpuprov.conf").exists()
    assert host.calls() == [
        {"fn": "nvmlDeviceSetPowerManagementLimit", "gpu": 0, "limit_mw": 250000},
        {"fn": "nvmlDeviceSetPersistenceMode", "gpu": 0, "mode": 1},
    ]
    unit = host.file(BOOT_UNIT_FILE).read_text()
    assert f"ExecStart={sys.executable} -m provision reapply-gpu-settings" in unit
    link = host.root / "etc/systemd/system/multi-user.target.wants" / BOOT_UNIT
    assert link.is_symlink() and os.readlink(link) == BOOT_UNIT_FILE
    assert any("enabled offline (systemd is not running here): not started" in r["msg"] for r in first["results"])

    profile_in_effect = tmp_path / "state/profile.json"
    assert json.loads(profile_in_effect.read_text())["profile"] == "rtx4090"  # gpuprov bench records it

    second = host.apply_json("apply", "rtx4090")
    # one module runs: the plan (the GPU is probed once). The GPU settings' task, the 2 files, the boot unit
    # and the profile record are skipped: the plan found them as desired, and the profile recorded already;
    # gpuprov_serving's facts come from it too, and with the Ollama drop-in as desired (no key, no system
    # user, no running systemd) none of its apply tasks runs
    assert second["changed"] == 0 and second["failed"] == 0 and second["ok"] == 2
    ran = [r["task"].partition(" : ")[2] for r in second["results"] if r["status"] == "ok"]
    assert ran == [
        "Compute what the profile asks for on this host (refuses before any change).",
        "Remember whether systemd runs this host, for the tasks and the handlers, and whether the server has work.",
    ]
    skipped = {(r["task"].partition(" : ")[2], r["item"]) for r in second["results"] if r["status"] == "skipped"}
    assert skipped >= {
        ("Ensure the GPU settings of the profile are applied.", None),
        ("Ensure the files of the profile are written.", SETTINGS_FILE),
        ("Ensure the files of the profile are written.", BOOT_UNIT_FILE),
        ("Ensure the units of the profile are enabled.", BOOT_UNIT),
        ("Record which profile is in effect on the host.", None),
    }
    assert [r for r in second["results"] if "gpuprov_serving" in r["task"]] == [
        r for r in second["results"] if r["task"].endswith("whether the server has work.")
    ]
    assert len(host.calls()) == 2  # no setter called again
    assert json.loads(profile_in_effect.read_text())["profile"] == "rtx4090"

    reverted = host.apply_json("revert")
    assert reverted["changed"] == 5
    assert not profile_in_effect.exists()
    assert not host.file("/etc/systemd/system/ollama.service.d").exists()
    assert host.calls()[2:] == [
        {"fn": "nvmlDeviceSetPowerManagementLimit", "gpu": 0, "limit_mw": 450000},
        {"fn": "nvmlDeviceSetPersistenceMode", "gpu": 0, "mode": 0},
    ]
    assert (host.gpu0()["power_limit_w"], host.gpu0()["persistence_mode"]) == (450.0, False)
    assert not link.exists() and not host.file(BOOT_UNIT_FILE).exists()
    assert not host.file("/etc/gpuprov").exists()  # the directory gpuprov created is gone too
    again = host.apply_json("revert")
    assert again["changed"] == 0 and len(host.calls()) == 4


@pytest.mark.slow
def test_laptop_fallback_suspend_and_revert_restores_a_replaced_file(tmp_path: Path) -> None:
    host = Host(tmp_path, "rtx4090-laptop")
    # a modprobe file the user had before: revert must put it back exactly
    mine = host.file(MODPROBE_FILE)
    mine.parent.mkdir(parents=True)
    mine.write_text("options nvidia NVreg_PreserveVideoMemoryAllocations=0\n")
    mine.chmod(0o600)
    # the driver's suspend helper is installed in the image
    helper = host.root / "usr/lib/systemd/system/nvidia-suspend.service"
    helper.parent.mkdir(parents=True)
    helper.write_text(
        "[Unit]\nDescription=x\n[Service]\nType=oneshot\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=systemd-suspend.service\n"
    )

    result = host.apply_json("apply", "rtx4090-laptop")
    assert result["failed"] == 0
    # the snapshot is a real laptop's pattern: a power range reported, the setter refused, so the lock
    # comes in the power limit's place (first), then persistence
    assert host.calls() == [
        {"fn": "nvmlDeviceSetGpuLockedClocks", "gpu": 0, "min_mhz": 210, "max_mhz": 1700},
        {"fn": "nvmlDeviceSetPersistenceMode", "gpu": 0, "mode": 1},
    ]
    assert "NVreg_PreserveVideoMemoryAllocations=1" in mine.read_text()
    assert (host.root / "etc/systemd/system/systemd-suspend.service.wants/nvidia-suspend.service").is_symlink()
    settings = json.loads(host.file(SETTINGS_FILE).read_text())
    assert settings["gpus"][0]["fallback_locked_clocks_mhz"] == [210, 1700]

    assert host.apply_json("apply", "rtx4090-laptop")["changed"] == 0

    host.apply_json("revert")
    assert host.calls()[-1] == {"fn": "nvmlDeviceResetGpuLockedClocks", "gpu": 0}
    assert mine.read_text() == "options nvidia NVreg_PreserveVideoMemoryAllocations=0\n"
    assert oct(mine.stat().st_mode & 0o777) == "0o600"
    assert not (host.root / "etc/systemd/system/systemd-suspend.service.wants/nvidia-suspend.service").exists()
    assert host.apply_json("revert")["changed"] == 0


@pytest.mark.slow
def test_laptop_that_reports_a_range_but_refuses_the_setter_gets_the_fallback(tmp_path: Path) -> None:
    """Many laptop drivers report power-limit constraints through NVML and still answer NOT_SUPPORTED to the
    setter: the probe cannot see that, so apply must fall back when the setter refuses — not fail."""
    host = Host(tmp_path, "rtx4090-laptop")
    data = json.loads(host.gpu.read_text())
    gpu = data["gpus"][0]
    gpu.update(power_min_limit_w=5.0, power_max_limit_w=175.0)
    gpu["unavailable"].pop("power_constraints_w", None)  # the range is reported; set_power_limit still refused
    host.gpu.write_text(json.dumps(data))

    plan = host.gpuprov("plan", "rtx4090-laptop", "--root", str(host.root), "--json")
    assert plan.returncode == 0, plan.stderr
    assert any("if the driver refuses the power limit" in n for n in json.loads(plan.stdout)["notes"])

    first = host.apply_json("apply", "rtx4090-laptop")
    assert first["failed"] == 0
    assert host.calls() == [
        {"fn": "nvmlDeviceSetGpuLockedClocks", "gpu": 0, "min_mhz": 210, "max_mhz": 1700},
        {"fn": "nvmlDeviceSetPersistenceMode", "gpu": 0, "mode": 1},
    ]
    assert any("power limit refused by the driver" in r["msg"] for r in first["results"])
    assert any("if the driver refuses the power limit" in n for n in first["notes"])  # apply says what plan says
    boot = json.loads(host.file(SETTINGS_FILE).read_text())["gpus"][0]
    assert boot["settings"]["power_limit_w"] == 110 and boot["fallback_locked_clocks_mhz"] == [210, 1700]

    # the refusal is remembered: the plan is honest and the second apply calls nothing
    plan = json.loads(host.gpuprov("plan", "rtx4090-laptop", "--root", str(host.root), "--json").stdout)
    rows = [c for c in plan["changes"] if c["subject"] == "gpu0"]
    assert {(c["setting"], c["action"]) for c in rows} == {("locked_clocks_mhz", "ok"), ("persistence_mode", "ok")}
    second = host.apply_json("apply", "rtx4090-laptop")
    assert second["changed"] == 0 and len(host.calls()) == 2

    host.apply_json("revert")
    assert host.calls()[2:] == [
        {"fn": "nvmlDeviceSetPersistenceMode", "gpu": 0, "mode": 0},
        {"fn": "nvmlDeviceResetGpuLockedClocks", "gpu": 0},
    ]
    assert host.apply_json("revert")["changed"] == 0


def test_check_and_diff_change_nothing(tmp_path: Path) -> None:
    host = Host(tmp_path, "rtx4090-laptop")
    proc = host.gpuprov("apply", "rtx4090-laptop", "--check", "--diff", "--root", str(host.root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "check mode: nothing changed" in proc.stdout
    assert "+options nvidia NVreg_PreserveVideoMemoryAllocations=1" in proc.stdout
    assert "power_limit_w: 110" in proc.stdout  # the GPU settings' diff (the refusal is not known before trying)
    assert host.calls() == [] and host.tree() == []
    # check mode needs no root
    proc = host.gpuprov("apply", "rtx4090-laptop", "--check", "--root", str(host.root), GPUPROV_NVML_REPLAY_AS_USER="1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and it counts what the real apply then changes: the server's system user too (systemd-sysusers --dry-run)
    checked = host.apply_json("apply", "rtx4090-laptop", "--check")
    assert any("systemd-sysusers --dry-run" in r["task"] and r["status"] == "changed" for r in checked["results"])
    assert host.tree() == []
    assert host.apply_json("apply", "rtx4090-laptop")["changed"] == checked["changed"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("apply", "rtx4090"), {"GPUPROV_NVML_REPLAY_AS_USER": "1"}, "run it with sudo, or add --check"),
        (("revert",), {"GPUPROV_NVML_REPLAY_AS_USER": "1"}, "run it with sudo, or add --check"),
        (("apply", "h100"), {}, "profile h100 is for NVIDIA H100*, compute capability 9.0; this host has NVIDIA"),
        (("apply", "hot"), {}, "power limit 700 W is outside what this GPU accepts (150-600 W, NVML constraints)"),
    ],
)
def test_refusals_change_nothing(tmp_path: Path, args: tuple, env: dict, message: str) -> None:
    host = Host(tmp_path, "rtx4090", ollama=True)
    (tmp_path / "config/gpuprov/profiles").mkdir(parents=True)
    (tmp_path / "config/gpuprov/profiles/hot.yaml").write_text("extends: rtx4090\ngpu: {power_limit_w: 700}\n")
    proc = host.gpuprov(*args, "--root", str(host.root), **env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert host.calls() == [] and host.tree() == []


def test_no_driver_is_refused(tmp_path: Path) -> None:
    host = Host(tmp_path, "rtx4090", ollama=True)
    data = json.loads(host.gpu.read_text())
    data["driver"]["nvml"] = {
        "ok": False,
        "kind": "driver_not_loaded",
        "message": "the NVIDIA kernel module is not loaded",
    }
    host.gpu.write_text(json.dumps(data))
    proc = host.gpuprov("apply", "rtx4090", "--root", str(host.root))
    assert proc.returncode == 3
    assert "no usable NVIDIA driver (the NVIDIA kernel module is not loaded)" in proc.stderr


@pytest.mark.slow
def test_boot_unit_reapplies_after_a_reboot(tmp_path: Path) -> None:
    """Run the written unit's ExecStart= as systemd would, on a GPU whose limit a 'reboot' reset."""
    host = Host(tmp_path, "rtx4090", ollama=True)
    host.apply_json("apply", "rtx4090")
    data = json.loads(host.gpu.read_text())
    data["snapshot"]["gpus"][0].update(power_limit_w=450.0, persistence_mode=False)
    host.gpu.write_text(json.dumps(data))
    unit = host.file(BOOT_UNIT_FILE).read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    argv[-1] = str(host.file(SETTINGS_FILE))  # the image's /etc
    proc = subprocess.run(argv, env=host.env, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "GPU 0: power limit 250 W" in proc.stdout
    assert (host.gpu0()["power_limit_w"], host.gpu0()["persistence_mode"]) == (250.0, True)


def test_boot_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    from provision.plan import make_plan
    from provision.plantypes import HostState
    from provision.profiles.loader import load_profile
    from provision.systemd import UnitState
    from tests.conftest import load_snapshot

    ollama = {"ollama.service": UnitState("ollama.service", "/etc/systemd/system/ollama.service", True)}
    plan = make_plan(
        *gathered(load_snapshot("rtx4090"), load_profile("rtx4090"), HostState(python=sys.executable, units=ollama))
    )
    unit = tmp_path / BOOT_UNIT
    unit.write_text(next(f.content for f in plan.desired.files if f.path == BOOT_UNIT_FILE))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, check=False)
    problems = [ln for ln in proc.stderr.splitlines() if BOOT_UNIT in ln]
    assert proc.returncode == 0 and problems == [], proc.stderr


def test_offline_enable_matches_systemctl_root(tmp_path: Path) -> None:
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        pytest.skip("systemctl not installed")
    from provision.systemd import disable_offline, enable_offline, unit_state

    text = (
        "[Unit]\nDescription=t\n[Service]\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=multi-user.target\nRequiredBy=x.target\n"
    )
    trees = []
    for name in ("ours", "theirs"):
        root = tmp_path / name
        (root / "etc/systemd/system").mkdir(parents=True)
        (root / "etc/systemd/system/t.service").write_text(text)
        trees.append(root)
    enable_offline("t.service", root=trees[0])
    proc = subprocess.run([systemctl, f"--root={trees[1]}", "enable", "t.service"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    def links(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): os.readlink(p) for p in root.rglob("*") if p.is_symlink()}

    assert links(trees[0]) == links(trees[1]) != {}
    assert unit_state("t.service", root=trees[1]).enabled
    disable_offline("t.service", root=trees[1])
    assert links(trees[1]) == {} and not unit_state("t.service", root=trees[1]).enabled


def test_facts_module_returns_the_probe_snapshot(tmp_path: Path) -> None:
    from provision.ansiblerun import ansible_playbook, collections_dir

    host = Host(tmp_path, "rtx4090-laptop")
    ansible = str(Path(ansible_playbook()).with_name("ansible"))
    interpreter = f"ansible_python_interpreter={sys.executable}"
    proc = subprocess.run(
        [ansible, "localhost", "-c", "local", "-m", "gpuprov.gpu.gpuprov_facts", "-e", interpreter],
        env={**host.env, "ANSIBLE_COLLECTIONS_PATH": str(collections_dir()), "ANSIBLE_LOCALHOST_WARNING": "false"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = json.loads(proc.stdout.split("=>", 1)[1])
    gpus = payload["ansible_facts"]["gpuprov_snapshot"]["gpus"]
    assert gpus[0]["name"] == "NVIDIA GeForce RTX 4090 Laptop GPU"
    assert gpus[0]["unavailable"]["power_limit_w"] == "not_supported"  # a laptop's: NVML cannot read it
