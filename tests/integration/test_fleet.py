"""playbooks/site.yml through the real ansible-playbook, and the Molecule scenarios on booted systemd hosts.

The quick fleet here is made of inventory hosts that all run on this machine (``ansible_connection:
local``), each with its own image tree (``gpuprov_gpu_root``), state directory and replayed GPU: the
playbook's decisions (profile per host, skips, batches, the summary, check mode, idempotence) are the
same as on remote hosts, at a fraction of the cost. The Molecule scenarios do the real thing: gpuprov
installed on Debian hosts booted with systemd-nspawn, reached over SSH, units enabled in a running systemd.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SNAPSHOTS
from tests.integration import molecule_hosts, nspawn

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{BIN}:{env.get('PATH', '')}",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_HOST_KEY_CHECKING": "false",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
            "GPUPROV_FLEET_SUMMARY": str(tmp_path / "summary.json"),
        }
    )
    return env


#: where Ollama's installer puts its binary: the built-in rtx4090 serves Ollama
OLLAMA_BINARY = "usr/local/bin/ollama"


def local_fleet(tmp_path: Path, hosts: dict[str, dict[str, Any]], **group_vars: Any) -> Path:
    """An inventory of hosts on this machine. Per host: ``snapshot`` (a recorded GPU, replayed; absent:
    no driver), ``vars`` (host vars); ``unreachable: True`` makes an SSH host nobody listens for."""
    inventory: dict[str, Any] = {"all": {"vars": {}, "hosts": {}}}
    inventory["all"]["vars"] = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "gpuprov_host_install": False,
        "gpuprov_gpu_root": str(tmp_path / "hosts/{{ inventory_hostname }}/root"),
        **group_vars,
    }
    for name, spec in hosts.items():
        d = tmp_path / "hosts" / name
        (d / "root").mkdir(parents=True)
        hv: dict[str, Any] = {"gpuprov_environment": {"GPUPROV_STATE_DIR": str(d / "state")}, **spec.get("vars", {})}
        if spec.get("ollama"):  # Ollama's binary where its installer puts it: an Ollama profile plans only there
            (d / "root" / OLLAMA_BINARY).parent.mkdir(parents=True)
            (d / "root" / OLLAMA_BINARY).write_text("#!/bin/sh\n")
        if spec.get("snapshot"):
            shutil.copy(SNAPSHOTS / f"{spec['snapshot']}.constructed.json", d / "gpu.json")
            hv["gpuprov_environment"]["GPUPROV_NVML_REPLAY"] = str(d / "gpu.json")
            # each host's tree is that host's / (not an image to bake): its replayed GPU gets the settings
            hv["gpuprov_environment"]["GPUPROV_NVML_REPLAY_ROOT"] = str(d / "root")
        if spec.get("unreachable"):
            hv.update(
                {
                    "ansible_connection": "ssh",
                    "ansible_host": "127.0.0.1",
                    "ansible_port": nspawn.free_port(),
                    "ansible_ssh_common_args": "-o ConnectTimeout=5",
                }
            )
        inventory["all"]["hosts"][name] = hv
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def run_site(
    tmp_path: Path, inventory: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    summary = tmp_path / "summary.json"
    summary.unlink(missing_ok=True)
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks/site.yml"), *args],
        env={**_env(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert summary.exists(), proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc, json.loads(summary.read_text())


def rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in summary["hosts"]}


def calls(tmp_path: Path, host: str) -> list[dict[str, Any]]:
    return json.loads((tmp_path / "hosts" / host / "gpu.json").read_text()).get("calls", [])


def files_under(tmp_path: Path, host: str) -> list[str]:
    """The files in the host's tree but the test's own Ollama binary."""
    root = tmp_path / "hosts" / host / "root"
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and str(p.relative_to(root)) != OLLAMA_BINARY
    )


FLEET = {
    "gpu-4090": {"snapshot": "rtx4090", "vars": {"gpuprov_profile": "rtx4090"}, "ollama": True},
    "gpu-h100": {"snapshot": "h100"},  # gpuprov_profile unset: auto
    "gpu-l4": {"snapshot": "l4", "vars": {"gpuprov_profile": "auto"}},
    "laptop-wrong-profile": {"snapshot": "rtx4090-laptop", "vars": {"gpuprov_profile": "rtx4090"}},
    "cpu-only": {},
    "gone": {"unreachable": True},
}


@pytest.mark.slow
def test_rollout_skips_what_it_cannot_tune_fails_the_unreachable_alone_and_converges(tmp_path: Path) -> None:
    inventory = local_fleet(tmp_path, FLEET)
    proc, summary = run_site(tmp_path, inventory, "-e", "gpuprov_serial=3")
    out = proc.stdout
    assert proc.returncode == 4, out[-3000:]  # ansible-playbook: a host was unreachable
    r = rows(summary)
    assert list(r) == list(FLEET)  # every host of the inventory, in its order
    assert {h: r[h]["status"] for h in r} == {
        "gpu-4090": "changed",
        "gpu-h100": "changed",
        "gpu-l4": "skipped",
        "laptop-wrong-profile": "skipped",
        "cpu-only": "skipped",
        "gone": "unreachable",
    }
    assert (r["gpu-4090"]["profile"], r["gpu-4090"]["gpus"]) == ("rtx4090", ["1x NVIDIA GeForce RTX 4090"])
    assert (r["gpu-h100"]["profile"], r["gpu-h100"]["gpus"]) == ("h100", ["1x NVIDIA H100 80GB HBM3"])
    assert r["gpu-l4"]["why"] == "GPU tasks skipped: no built-in profile matches NVIDIA L4"
    assert r["laptop-wrong-profile"]["why"].startswith(
        "GPU tasks skipped: profile rtx4090 is for NVIDIA GeForce RTX 4090"
    )
    assert r["cpu-only"]["why"].startswith("GPU tasks skipped: no usable NVIDIA driver")
    assert (r["cpu-only"]["profile"], r["cpu-only"]["gpus"]) == ("auto", [])
    assert r["gone"]["unreachable"] == 1 and "ssh" in r["gone"]["why"].lower()
    assert all(r[h]["failed"] == 0 for h in r)
    # the table, one line per host
    table = out[out.index("GPUPROV FLEET SUMMARY") :]
    for host in FLEET:
        assert any(line.startswith(host + " ") for line in table.splitlines()), table
    assert "1 unreachable, 2 changed, 3 skipped (6 hosts)" in table

    # what the hosts got: the GPU settings through the replayed NVML, files in their own trees
    assert calls(tmp_path, "gpu-4090") == [
        {"fn": "nvmlDeviceSetPowerManagementLimit", "gpu": 0, "limit_mw": 250000},
        {"fn": "nvmlDeviceSetPersistenceMode", "gpu": 0, "mode": 1},
    ]
    assert calls(tmp_path, "gpu-h100") == []  # already at its default limit with persistence on
    assert calls(tmp_path, "gpu-l4") == [] and calls(tmp_path, "laptop-wrong-profile") == []
    assert "etc/systemd/system/ollama.service.d/gpuprov.conf" in files_under(tmp_path, "gpu-4090")
    assert "etc/gpuprov/gpu-settings.json" in files_under(tmp_path, "gpu-h100")
    for host in ("gpu-l4", "laptop-wrong-profile", "cpu-only"):
        assert files_under(tmp_path, host) == [], host
    settings = json.loads((tmp_path / "hosts/gpu-h100/root/etc/gpuprov/gpu-settings.json").read_text())
    assert settings["profile"] == "h100"

    # again on the converged fleet: nothing changes anywhere
    proc2, summary2 = run_site(tmp_path, inventory, "-e", "gpuprov_serial=3")
    assert proc2.returncode == 4
    r2 = rows(summary2)
    assert {h: (r2[h]["status"], r2[h]["changed"]) for h in r2} == {
        "gpu-4090": ("unchanged", 0),
        "gpu-h100": ("unchanged", 0),
        "gpu-l4": ("skipped", 0),
        "laptop-wrong-profile": ("skipped", 0),
        "cpu-only": ("skipped", 0),
        "gone": ("unreachable", 0),
    }
    assert len(calls(tmp_path, "gpu-4090")) == 2


@pytest.mark.slow
def test_check_diff_shows_the_whole_fleet_and_changes_nothing(tmp_path: Path) -> None:
    inventory = local_fleet(tmp_path, {k: FLEET[k] for k in ("gpu-4090", "gpu-h100", "cpu-only")})
    proc, summary = run_site(tmp_path, inventory, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert summary["check_mode"] is True
    r = rows(summary)
    assert {h: r[h]["status"] for h in r} == {
        "gpu-4090": "would change",
        "gpu-h100": "would change",
        "cpu-only": "skipped",
    }
    assert "GPUPROV FLEET SUMMARY (check mode: nothing was changed)" in proc.stdout
    # the diff of a file the profile would write, in the output
    assert '+Environment="OLLAMA_FLASH_ATTENTION=1"' in proc.stdout
    for host in ("gpu-4090", "gpu-h100", "cpu-only"):
        assert files_under(tmp_path, host) == [], host
    assert calls(tmp_path, "gpu-4090") == [] and calls(tmp_path, "gpu-h100") == []
    assert not (tmp_path / "hosts/gpu-4090/state/previous.json").exists()


@pytest.mark.slow
def test_a_failed_batch_stops_the_rollout(tmp_path: Path) -> None:
    hosts = {
        "a-typo": {"snapshot": "rtx4090", "vars": {"gpuprov_profile": "rtx4009"}},
        "b-4090": FLEET["gpu-4090"],
        "c-4090": FLEET["gpu-4090"],
    }
    inventory = local_fleet(tmp_path, hosts)
    proc, summary = run_site(tmp_path, inventory, "-e", "gpuprov_serial=1", "-e", "gpuprov_max_fail_percentage=0")
    assert proc.returncode == 2, proc.stdout[-3000:]
    r = rows(summary)
    assert r["a-typo"]["status"] == "failed"
    assert "no profile named 'rtx4009'" in r["a-typo"]["why"]
    assert (r["b-4090"]["status"], r["c-4090"]["status"]) == ("not run", "not run")
    assert r["b-4090"]["profile"] == "rtx4090"  # from the inventory, though the host never ran
    for host in hosts:
        assert calls(tmp_path, host) == [] and files_under(tmp_path, host) == [], host


@pytest.mark.slow
def test_an_unreachable_host_fails_alone_in_the_default_batches(tmp_path: Path) -> None:
    """25% of 4 hosts is a batch of one: the unreachable host is a whole batch, and Ansible ends a play whose
    batch all failed. site.yml leaves it out instead; the other hosts are rolled out, the exit code says so."""
    hosts = {"gone": FLEET["gone"], "gpu-4090": FLEET["gpu-4090"], "cpu-only": {}, "gpu-h100": FLEET["gpu-h100"]}
    inventory = local_fleet(tmp_path, hosts)
    proc, summary = run_site(tmp_path, inventory)  # default gpuprov_serial and gpuprov_max_fail_percentage
    assert proc.returncode == 4, proc.stdout[-3000:]  # ansible-playbook: a host was unreachable
    assert proc.stdout.count("PLAY [Roll gpuprov profiles out to the fleet") == 4  # a batch per host
    r = rows(summary)
    assert {h: r[h]["status"] for h in r} == {
        "gone": "unreachable",
        "gpu-4090": "changed",
        "cpu-only": "skipped",
        "gpu-h100": "changed",
    }
    assert (r["gone"]["unreachable"], r["gone"]["changed"]) == (1, 0) and "ssh" in r["gone"]["why"].lower()
    assert all(r[h]["failed"] == 0 for h in r)
    assert len(calls(tmp_path, "gpu-4090")) == 2
    assert "etc/gpuprov/gpu-settings.json" in files_under(tmp_path, "gpu-h100")
    assert "1 unreachable, 2 changed, 1 skipped (4 hosts)" in proc.stdout


@pytest.mark.slow
def test_a_failed_host_still_stops_the_rollout_in_the_default_batches(tmp_path: Path) -> None:
    """Left out for being unreachable is not failed; a host whose task failed is, and max_fail_percentage
    (25% of a batch of one) stops the rollout there."""
    hosts = {
        "gone": FLEET["gone"],
        "b-4090": FLEET["gpu-4090"],
        "c-typo": {"snapshot": "rtx4090", "vars": {"gpuprov_profile": "rtx4009"}},
        "d-4090": FLEET["gpu-4090"],
    }
    inventory = local_fleet(tmp_path, hosts)
    proc, summary = run_site(tmp_path, inventory)
    assert proc.returncode == 2, proc.stdout[-3000:]
    r = rows(summary)
    assert [r[h]["status"] for h in hosts] == ["unreachable", "changed", "failed", "not run"]
    assert r["gone"]["unreachable"] == 1
    assert calls(tmp_path, "d-4090") == [] and files_under(tmp_path, "d-4090") == []


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("gpuprov_serial=abc", "gpuprov_serial is abc: give a number of hosts per batch (2) or a percentage"),
        ("gpuprov_serial=150%", "gpuprov_serial is 150%: give a number of hosts per batch"),
        ("gpuprov_max_fail_percentage=some", "gpuprov_max_fail_percentage is some: give a percentage from 0 to 100"),
    ],
)
def test_a_bad_batch_setting_stops_before_any_host_with_one_line(tmp_path: Path, setting: str, message: str) -> None:
    inventory = local_fleet(tmp_path, {"gpu-4090": FLEET["gpu-4090"]})
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks/site.yml"), "-e", setting],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out and "Unexpected Exception" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("[ERROR]")]
    assert len(errors) == 1 and message in errors[0], out
    assert "TASK [" not in out  # no host was touched
    assert calls(tmp_path, "gpu-4090") == [] and files_under(tmp_path, "gpu-4090") == []


@pytest.mark.slow
def test_the_wheelhouse_may_be_given_under_home_and_a_missing_one_is_refused(tmp_path: Path) -> None:
    """``gpuprov_host_wheelhouse: ~/gpuprov-wheels`` (the example inventory's) is the controller's home;
    a wheelhouse that is not there fails with a line saying so, before anything reaches the host."""
    home = tmp_path / "home"
    (home / "gpuprov-wheels").mkdir(parents=True)
    (home / "gpuprov-wheels/marker-0.1-py3-none-any.whl").write_bytes(b"not a real wheel")
    opt = tmp_path / "opt"
    common = {
        "gpuprov_host_install": True,
        "gpuprov_host_source": "index",  # nothing to build: the install fails, gpuprov is not in the wheelhouse
        "gpuprov_host_dir": str(opt),
        "gpuprov_host_system_python": sys.executable,
    }
    missing = local_fleet(
        tmp_path / "missing", {"gpu-4090": FLEET["gpu-4090"]}, gpuprov_host_wheelhouse="~/no-such-wheels", **common
    )
    proc, summary = run_site(tmp_path / "missing", missing, env={"HOME": str(home)})
    assert proc.returncode == 2, proc.stdout[-3000:]
    row = rows(summary)["gpu-4090"]
    assert row["status"] == "failed"
    assert "gpuprov_host_wheelhouse ~/no-such-wheels is not a directory on the controller" in row["why"]
    assert not opt.exists()

    inventory = local_fleet(
        tmp_path / "home-wheels", {"gpu-4090": FLEET["gpu-4090"]}, gpuprov_host_wheelhouse="~/gpuprov-wheels", **common
    )
    proc, summary = run_site(tmp_path / "home-wheels", inventory, env={"HOME": str(home)})
    assert (opt / "wheelhouse/marker-0.1-py3-none-any.whl").read_bytes() == b"not a real wheel", proc.stdout[-3000:]
    assert (home / ".cache/gpuprov/fleet/wheelhouse.tar").is_file()
    row = rows(summary)["gpu-4090"]
    assert row["status"] == "failed" and "installed in the virtualenv" in row["why"], row


def _project_copy(dest: Path) -> Path:
    """The files a wheel is built from, frozen (the checkout may change while the test runs)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for name in ("provision", "playbooks", "templates"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.mark.slow
@pytest.mark.network
def test_host_role_builds_the_wheel_and_installs_offline(tmp_path: Path) -> None:
    system_python = "/usr/bin/python3"
    if not Path(system_python).exists():
        pytest.skip("no /usr/bin/python3 to make the host's virtualenv from")
    pyver = subprocess.run(
        [system_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    project = _project_copy(tmp_path / "project")
    opt = tmp_path / "opt"
    inventory = local_fleet(
        tmp_path,
        {"gpu-4090": FLEET["gpu-4090"]},
        gpuprov_host_install=True,
        gpuprov_host_dir=str(opt),
        gpuprov_host_project_dir=str(project),
        gpuprov_host_controller_dir=str(tmp_path / "controller"),
        gpuprov_host_wheelhouse=str(molecule_hosts.wheelhouse(pyver)),
        gpuprov_host_system_python=system_python,
    )
    # a dry run on a host never prepared: nothing installed, the GPU tasks skipped, and the summary says why
    proc, summary = run_site(tmp_path, inventory, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-4000:]
    row = rows(summary)["gpu-4090"]
    assert row["status"] == "skipped" and "gpuprov is not installed on this host yet" in row["why"], row
    assert not opt.exists() and calls(tmp_path, "gpu-4090") == []

    proc, summary = run_site(tmp_path, inventory)
    assert proc.returncode == 0, proc.stdout[-4000:]
    row = rows(summary)["gpu-4090"]
    assert row["status"] == "changed"
    assert "Ensure gpuprov and its dependencies are installed in the virtualenv." in row["why"]
    venv_python = opt / "venv/bin/python"
    # the modules ran with the virtualenv's Python: the boot unit runs gpuprov with it too
    unit = (tmp_path / "hosts/gpu-4090/root/etc/systemd/system/gpuprov-gpu-settings.service").read_text()
    assert f"ExecStart={venv_python} -m provision reapply-gpu-settings" in unit
    where = subprocess.run(
        [str(venv_python), "-c", "import provision, pynvml; print(provision.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(opt / "venv"))
    assert sorted(p.name for p in (opt / "wheels").iterdir()) == ["gpuprov-0.1.0-py3-none-any.whl"]
    assert len(calls(tmp_path, "gpu-4090")) == 2

    proc2, summary2 = run_site(tmp_path, inventory)
    assert proc2.returncode == 0
    assert rows(summary2)["gpu-4090"]["changed"] == 0, rows(summary2)["gpu-4090"]

    # a change to the code is a new wheel of the same version: installed again
    (project / "provision/fleet.py").write_text((project / "provision/fleet.py").read_text() + "\n# changed\n")
    proc3, summary3 = run_site(tmp_path, inventory)
    assert proc3.returncode == 0
    assert "installed in the virtualenv" in rows(summary3)["gpu-4090"]["why"]
    installed = Path(where.strip()).parent / "fleet.py"
    assert installed.read_text().endswith("# changed\n")


@pytest.mark.slow
def test_playbooks_pass_ansible_lint_production(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--nocolor", "playbooks", "molecule"],
        # ansible.cfg at the root puts the gpuprov.gpu collection (playbooks/collections) on the path
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def _molecule(scenario: str, tmp_path: Path, timeout_s: int = 1200) -> None:
    missing = nspawn.missing_tools()
    if missing:
        pytest.skip(f"cannot boot systemd-nspawn hosts here: missing {', '.join(missing)}")
    env = _env(tmp_path)
    env.pop("GPUPROV_FLEET_SUMMARY")  # the scenario sets its own
    proc = subprocess.run(
        [str(BIN / "molecule"), "test", "-s", scenario],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    # the scenario recap: every action of the test sequence ran and succeeded, none was left out
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    recap = re.search(rf"^{scenario}\s*: actions=(\d+)\s+successful=(\d+)\s.*missing=(\d+)\s+failed=(\d+)", out, re.M)
    assert recap is not None, out[-3000:]
    actions, successful, missing_, failed = map(int, recap.groups())
    assert (successful, missing_, failed) == (actions, 0, 0) and actions >= 8, recap.group(0)


@pytest.mark.slow
@pytest.mark.nspawn
@pytest.mark.network
def test_molecule_default(tmp_path: Path) -> None:
    """One host, from nothing to a llama.cpp server running from an environment its profile's stack section
    made (llama-cpp-python built on the host): converge, idempotence, verify (a completion, then revert and
    nothing left; molecule/default/verify.yml), destroy. The build inside the host takes most of the time."""
    _molecule("default", tmp_path, timeout_s=2400)


@pytest.mark.slow
@pytest.mark.nspawn
@pytest.mark.network
def test_molecule_fleet(tmp_path: Path) -> None:
    """Six hosts in batches of two: converge, idempotence, verify the summary and every host, destroy."""
    _molecule("fleet", tmp_path)
