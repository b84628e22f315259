"""The proof that the hardening does not break a real server: a Debian host booted with systemd-nspawn,
``gpuprov apply`` of a llama.cpp profile inside it (the real CLI, which runs the real ansible-playbook
on that host), a CPU build of llama-cpp-python and the real Gemma 3 270M GGUF; the hardened unit runs
as its own user and answers a completion on the host's loopback. Plus systemd's own reading of the
ExecStart= quoting, on arbitrary model names.

Why ``gpuprov apply`` inside the host rather than ansible-playbook over SSH: it is what a user runs on
a GPU box, and it exercises the same playbook, roles and modules (local connection) with systemd as
PID 1, so units are enabled and started for real; the fleet path over SSH is the Molecule scenarios'.

The host has no GPU: NVML is replayed from a recorded snapshot (``GPUPROV_NVML_REPLAY``) for apply and,
through a test-only drop-in, for the unit's ``ExecStartPre=gpuprov wait-gpu``. gpuprov is installed into
the host the way the gpuprov_host role does it (a wheel of this checkout and the locked dependencies from
an offline wheelhouse, into /opt/gpuprov/venv), so nothing depends on where the checkout lives; the
llama.cpp build, the model and their base interpreter are bind-mounted read-only at the same paths.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import provision
from provision.serving.commandline import server_argv
from provision.serving.files import serving_files
from provision.serving.settings import LlamaCppSettings, ServingSection
from tests.conftest import SNAPSHOTS
from tests.integration import molecule_hosts, nspawn
from tests.integration.llama_cpp_env import LlamaCppEnv, uv

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.nspawn,
    # on a fresh machine: debootstrap from the Debian mirror, the llama-cpp-python sdist from PyPI (both cached)
    pytest.mark.network,
    pytest.mark.skipif(bool(nspawn.missing_tools()), reason=f"cannot boot test hosts: {nspawn.missing_tools()}"),
]

REPO = Path(provision.__file__).resolve().parents[1]
#: gpuprov's interpreter in the test hosts (nspawn.install_gpuprov)
PY = f"{nspawn.GPUPROV_DIR}/venv/bin/python"
#: the hosts' python3 (Debian bookworm): the version the dependency wheels are for
HOST_PYTHON_VERSION = "3.11"
REPLAY = "/etc/gpuprov-test/gpu.json"
UNIT = "gpuprov-llama-cpp.service"
ECHO_UNIT = "argv-echo.service"
STATE = "/var/lib/gpuprov-llama-cpp"
TIMINGS: dict[str, float] = {}


def base_prefix(python: Path) -> Path:
    """The installation a virtualenv's interpreter runs from (``pyvenv.cfg`` home)."""
    for line in (python.parent.parent / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            home = Path(value.strip())
            return home.parent if home.name == "bin" else home
    return Path(sys.base_prefix)


def binds(env: LlamaCppEnv) -> list[str]:
    """The llama.cpp build, the model and the build's base interpreter: never the checkout."""
    out = {str(env.python.parent.parent), str(env.model.parent)}
    prefix = base_prefix(env.python)
    if str(prefix) not in ("/usr", "/usr/local", "/"):  # Debian's own python3.11 is in the rootfs
        out.add(str(prefix))
    return sorted(out)


def replay_dropin(unit: str) -> tuple[str, str]:
    return (
        f"/etc/systemd/system/{unit}.d/10-test-nvml-replay.conf",
        f"[Service]\nEnvironment=GPUPROV_NVML_REPLAY={REPLAY}\n",
    )


def profile_text(env: LlamaCppEnv, port: int, ctx: int) -> str:
    return (
        "description: e2e - llama.cpp (CPU build) behind gpuprov's hardened unit\n"
        "serving:\n"
        f"  port: {port}\n  api_key: true\n  gpus: [0]\n"
        f"  llama_cpp: {{model: {env.model}, venv: {env.python.parent.parent}, n_gpu_layers: 0, ctx_size: {ctx}}}\n"
    )


@dataclass(frozen=True)
class GpuprovDist:
    """What a test host installs gpuprov from: uv, the wheel of this checkout, the dependency wheels."""

    uv: str
    wheel: Path
    wheelhouse: Path


@pytest.fixture(scope="module")
def gpuprov_dist(tmp_path_factory: pytest.TempPathFactory) -> GpuprovDist:
    wheel = nspawn.build_wheel(REPO, tmp_path_factory.mktemp("dist"), uv())
    return GpuprovDist(uv(), wheel, molecule_hosts.wheelhouse(HOST_PYTHON_VERSION))


def _setup(m: nspawn.Machine) -> None:
    m.write(REPLAY, (SNAPSHOTS / "rtx4090.constructed.json").read_text())
    for unit in (UNIT, ECHO_UNIT):
        m.write(*replay_dropin(unit))


@contextmanager
def _host(name: str, workdir: Path, dist: GpuprovDist, binds_ro: list[str]) -> Iterator[nspawn.Machine]:
    started = time.monotonic()
    with nspawn.booted(name, workdir, binds_ro=binds_ro, setup=_setup) as m:
        TIMINGS[f"{name}_boot_s"] = m.boot_s or 0.0
        installed = time.monotonic()
        assert (
            nspawn.install_gpuprov(m, wheel=dist.wheel, wheelhouse=dist.wheelhouse, uv=dist.uv, extras=("ansible",))
            == PY
        )
        TIMINGS[f"{name}_install_s"] = time.monotonic() - installed
        TIMINGS[f"{name}_ready_s"] = time.monotonic() - started
        yield m


@pytest.fixture(scope="module")
def machine(gpuprov_dist: GpuprovDist, tmp_path_factory: pytest.TempPathFactory) -> Iterator[nspawn.Machine]:
    """A host with gpuprov installed and nothing of this machine bound in."""
    with _host("gpuprov-e2e", tmp_path_factory.mktemp("nspawn") / "e2e", gpuprov_dist, []) as m:
        yield m
    print("nspawn timings:", json.dumps({k: round(v, 1) for k, v in TIMINGS.items()}))


@pytest.fixture(scope="module")
def llama_machine(
    llama_cpp_env: LlamaCppEnv, gpuprov_dist: GpuprovDist, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[nspawn.Machine]:
    """A host with gpuprov installed and the llama.cpp build and model bound in at their paths."""
    with _host(
        "gpuprov-e2e-llama", tmp_path_factory.mktemp("nspawn") / "e2e-llama", gpuprov_dist, binds(llama_cpp_env)
    ) as m:
        yield m


def apply(m: nspawn.Machine, *args: str, python: str = PY) -> dict:
    proc = m.ssh(
        f"cd / && GPUPROV_NVML_REPLAY={REPLAY} {shlex.quote(python)} -m provision {' '.join(args)} --json",
        check=False,
        timeout_s=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(proc.stdout)


HTTP = r"""
import json, sys, time, urllib.request, urllib.error
port, key, path, body, wait = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
deadline = time.monotonic() + wait
while True:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body.encode() or None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": "Bearer " + key} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            print(json.dumps({"status": r.status, "body": json.loads(r.read())})); break
    except urllib.error.HTTPError as e:
        print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")})); break
    except OSError as e:
        if time.monotonic() > deadline:
            print(json.dumps({"status": 0, "body": str(e)})); break
        time.sleep(0.5)
"""


def http(m: nspawn.Machine, port: int, key: str, path: str, body: str = "", wait_s: float = 0) -> dict:
    """An HTTP request from inside the host (its own python3), to its loopback."""
    m.write("/root/gpuprov_test_request.py", HTTP)
    cmd = f"python3 /root/gpuprov_test_request.py {port} {shlex.quote(key)} {path} {shlex.quote(body)} {wait_s}"
    return json.loads(m.ssh(cmd, timeout_s=wait_s + 180).stdout)


def journal(m: nspawn.Machine, unit: str = UNIT) -> str:
    cmd = f"systemctl status --no-pager {unit}; journalctl -u {unit} -n 40 -o cat --no-pager"
    return m.ssh(cmd, check=False).stdout


def show(m: nspawn.Machine, prop: str, unit: str = UNIT) -> str:
    return m.ssh(f"systemctl show -p {prop} --value {unit}").stdout.strip()


def test_apply_llama_cpp_profile_serves_a_completion_from_the_hardened_unit(
    llama_machine: nspawn.Machine, llama_cpp_env: LlamaCppEnv
) -> None:
    m, port = llama_machine, nspawn.free_port()
    m.write("/etc/gpuprov/profiles/e2e-llama.yaml", profile_text(llama_cpp_env, port, 512))
    started = time.monotonic()
    first = apply(m, "apply", "e2e-llama")
    assert first["failed"] == 0 and first["changed"] > 0
    key = m.ssh("cut -d= -f2- /etc/gpuprov/serving/llama-cpp.env").stdout.strip()
    assert m.ssh("stat -c '%U %a' /etc/gpuprov/serving/llama-cpp.env").stdout.split() == ["root", "600"]

    models = http(m, port, key, "/v1/models", wait_s=240)
    TIMINGS["apply_to_answer_s"] = time.monotonic() - started
    assert models["status"] == 200, f"{models}\n{journal(m)}"
    request = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
    completion = http(m, port, key, "/v1/completions", json.dumps(request))
    assert completion["status"] == 200, completion
    assert completion["body"]["choices"][0]["text"].strip()
    assert http(m, port, "", "/v1/models")["status"] == 401  # the key is required
    assert http(m, port, "wrong", "/v1/models")["status"] == 401

    # the unit as shipped: active, its own non-login user, GPU-ready ordering, the wait ran, hardened
    assert show(m, "ActiveState") == "active"
    pid = show(m, "MainPID")
    uid = m.ssh(f"awk '/^Uid:/ {{print $2}}' /proc/{pid}/status").stdout.strip()
    assert uid == m.ssh("id -u gpuprov-llama-cpp").stdout.strip() != "0"
    assert m.ssh("getent passwd gpuprov-llama-cpp | cut -d: -f7").stdout.strip() == "/usr/sbin/nologin"
    assert "ready after" in m.ssh(f"journalctl -u {UNIT} -o cat --no-pager").stdout
    assert "nvidia-persistenced.service" in show(m, "After")
    exposure = m.ssh(f"systemd-analyze security --no-pager {UNIT} | tail -1").stdout
    score = float(exposure.split(":")[1].split()[0])
    TIMINGS["live_exposure"] = score
    assert score <= 2.0, exposure
    assert show(m, "UnitFileState") == "enabled"

    # idempotent: nothing changed, nothing restarted
    invocation = show(m, "InvocationID")
    again = apply(m, "apply", "e2e-llama")
    assert again["changed"] == 0 and again["failed"] == 0, again
    assert show(m, "InvocationID") == invocation

    # a changed setting rewrites the unit and restarts the server once (the handler)
    m.write("/etc/gpuprov/profiles/e2e-llama.yaml", profile_text(llama_cpp_env, port, 1024))
    changed = apply(m, "apply", "e2e-llama")
    assert changed["failed"] == 0 and changed["changed"] >= 1
    assert show(m, "InvocationID") != invocation
    assert "--n_ctx 1024" in show(m, "ExecStart").replace(" ; ", " ")
    assert http(m, port, key, "/v1/models", wait_s=240)["status"] == 200
    assert show(m, "NRestarts") == "0"

    # revert: stopped, disabled, files gone
    reverted = apply(m, "revert")
    assert reverted["failed"] == 0
    assert show(m, "ActiveState") in ("inactive", "failed")
    assert (
        m.ssh(
            f"test ! -e /etc/systemd/system/{UNIT} && test ! -e /etc/gpuprov/serving/llama-cpp.env", check=False
        ).returncode
        == 0
    )
    assert http(m, port, key, "/v1/models")["status"] == 0
    TIMINGS["e2e_test_s"] = time.monotonic() - started


# -- systemd's own reading of the quoting -------------------------------------------------------------

ECHO = "#!/usr/bin/python3\nimport json, os, sys\nopen(os.environ['STATE_DIRECTORY'] + '/argv.json', 'w').write(json.dumps(sys.argv[1:]))\n"  # noqa: E501
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=30)


@pytest.fixture(scope="module")
def echo_host(machine: nspawn.Machine) -> nspawn.Machine:
    """The llama.cpp unit template with a venv whose python only records its arguments."""
    machine.write("/opt/argv-echo/bin/python", ECHO, 0o755)
    section = ServingSection("llama_cpp", LlamaCppSettings(model="/m/x", venv="/opt/argv-echo"), port=1)
    for path, content, _, _ in serving_files("q", section, python=PY, root=machine.rootfs).files:
        if path.startswith("/etc/sysusers.d/"):
            machine.write(path, content)
            machine.ssh(f"systemd-sysusers {path}")
    return machine


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(model=_TEXT, arg=_TEXT)
def test_systemd_passes_every_value_through_unchanged(echo_host: nspawn.Machine, model: str, arg: str) -> None:
    """Model names and extra arguments with spaces, quotes, $, %, ;, backslashes, any Unicode: the
    process systemd starts gets exactly the arguments gpuprov meant, one each."""
    m = echo_host
    section = ServingSection(
        "llama_cpp", LlamaCppSettings(model="/m/" + model, venv="/opt/argv-echo", extra_args=(arg,)), port=1
    )
    files = serving_files("q", section, python=PY, root=m.rootfs)
    unit = next(c for p, c, _, _ in files.files if p.endswith(".service"))
    m.write(f"/etc/systemd/system/{ECHO_UNIT}", unit)
    out = m.ssh(
        f"rm -f {STATE}/argv.json; systemctl daemon-reload && systemctl start {ECHO_UNIT} && "
        f"for i in $(seq 100); do test -s {STATE}/argv.json && break; sleep 0.1; done; cat {STATE}/argv.json",
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr + m.ssh(f"journalctl -u {ECHO_UNIT} -n 20 -o cat").stdout
    assert json.loads(out.stdout) == server_argv(section)[1:]


def test_harness_reaches_the_host_with_ansible_over_ssh(machine: nspawn.Machine) -> None:
    """What the fleet scenarios rely on: ansible's ping over SSH to the booted host."""
    ansible = Path(sys.executable).parent / "ansible"  # the controller's; PY is the host's interpreter
    if not ansible.exists() and shutil.which("ansible") is None:
        pytest.skip("ansible not installed")
    import subprocess

    proc = subprocess.run(
        [
            str(ansible) if ansible.exists() else "ansible",
            "all",
            "-i",
            f"127.0.0.1:{machine.port},",
            "-u",
            "root",
            "--private-key",
            str(machine.key),
            "-m",
            "ping",
            "-e",
            f"ansible_python_interpreter={PY}",
            "--ssh-common-args=-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0 and '"ping": "pong"' in proc.stdout, proc.stdout + proc.stderr


# -- the boot-time re-apply of GPU settings, under its sandbox, started by real systemd ---------------------

BOOT_UNIT = "gpuprov-gpu-settings.service"
#: the replayed GPU the boot unit talks to: under /var/lib/gpuprov, the one path its sandbox may write
BOOT_REPLAY = "/var/lib/gpuprov/boot-gpu.json"


def _apply_power_profile(m: nspawn.Machine, python: str = PY) -> None:
    m.write(
        "/etc/gpuprov/profiles/e2e-power.yaml",
        "description: e2e - power limit re-applied at boot\nmatch: {gpu_names: ['*']}\n"
        "gpu: {power_limit_w: 250, persistence: true}\n",
    )
    first = apply(m, "apply", "e2e-power", python=python)
    assert first["failed"] == 0, first
    assert show(m, "UnitFileState", BOOT_UNIT) == "enabled"


def _reboot_and_start_the_boot_unit(m: nspawn.Machine) -> None:
    """The replayed GPU back at its default 450 W (as after a reboot), then the boot unit started by systemd:
    it must succeed and put the profile's 250 W back through NVML."""
    m.write(BOOT_REPLAY, (SNAPSHOTS / "rtx4090.constructed.json").read_text())
    m.write(
        f"/etc/systemd/system/{BOOT_UNIT}.d/10-test-nvml-replay.conf",
        f"[Service]\nEnvironment=GPUPROV_NVML_REPLAY={BOOT_REPLAY}\n",
    )
    m.ssh(f"systemctl daemon-reload && systemctl start {BOOT_UNIT}", check=False, timeout_s=300)
    assert show(m, "ActiveState", BOOT_UNIT) == "active", journal(m, BOOT_UNIT)
    assert show(m, "Result", BOOT_UNIT) == "success", journal(m, BOOT_UNIT)
    state = json.loads(m.ssh(f"cat {BOOT_REPLAY}").stdout)
    assert {"fn": "nvmlDeviceSetPowerManagementLimit", "gpu": 0, "limit_mw": 250000} in state["calls"]
    assert state["snapshot"]["gpus"][0]["power_limit_w"] == 250.0


def test_boot_unit_reapplies_the_power_limit_inside_its_sandbox(machine: nspawn.Machine) -> None:
    """After a "reboot" (the replayed GPU back at its default 450 W), systemd starts the hardened boot
    unit, which puts the profile's 250 W back through NVML: root with only CAP_SYS_ADMIN, no network,
    ProtectSystem=strict. The driver's own capability check needs a real GPU; the rest is real here."""
    m = machine
    _apply_power_profile(m)
    _reboot_and_start_the_boot_unit(m)
    assert show(m, "CapabilityBoundingSet", BOOT_UNIT) == "cap_sys_admin"
    exposure = m.ssh(f"systemd-analyze security --no-pager {BOOT_UNIT} | tail -1").stdout
    assert float(exposure.split(":")[1].split()[0]) <= 2.0, exposure

    reverted = apply(m, "revert")
    assert reverted["failed"] == 0
    assert m.ssh(f"test ! -e /etc/systemd/system/{BOOT_UNIT}", check=False).returncode == 0


def test_boot_unit_runs_gpuprov_from_a_home_directory_root_cannot_enter(machine: nspawn.Machine) -> None:
    """gpuprov run from a virtualenv in another user's 0700 home: the boot unit is root with CAP_SYS_ADMIN
    alone (no CAP_DAC_OVERRIDE), so it cannot enter that home; the interpreter is bound in past
    ProtectHome=tmpfs, as for the servers, and the unit starts."""
    m = machine
    python = "/home/alice/gpuprov/bin/python"
    m.ssh(
        f"id alice >/dev/null 2>&1 || useradd --create-home alice; rm -rf /home/alice/gpuprov && "
        f"cp -a {nspawn.GPUPROV_DIR}/venv /home/alice/gpuprov && chown -R alice: /home/alice && "
        "chmod 0700 /home/alice"
    )
    _apply_power_profile(m, python)
    unit = m.ssh(f"cat /etc/systemd/system/{BOOT_UNIT}").stdout
    assert f"ExecStart={python} -m provision reapply-gpu-settings" in unit
    assert "ProtectHome=tmpfs" in unit and "BindReadOnlyPaths=/home/alice/gpuprov" in unit
    _reboot_and_start_the_boot_unit(m)
    assert apply(m, "revert", python=python)["failed"] == 0
