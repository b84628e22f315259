"""The gpuprov.gpu collection as a user gets it: built with ``ansible-galaxy collection build``, installed
with ``ansible-galaxy collection install``, its roles included by a user's own playbook (outside this
repository, no ansible.cfg), ``ansible-test sanity`` on the installed tree and ``ansible-lint --profile
production`` from the repository root with no environment variable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision.ansiblerun import collections_dir
from tests.conftest import SNAPSHOTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SOURCE = collections_dir() / "ansible_collections/gpuprov/gpu"

#: ansible-test sanity tests that need nothing installed: they run offline
SANITY = (
    "action-plugin-docs",
    "compile",
    "empty-init",
    "ignores",
    "line-endings",
    "no-assert",
    "no-get-exception",
    "no-illegal-filenames",
    "no-smart-quotes",
    "replace-urlopen",
    "shebang",
    "symlinks",
    "use-argspec-type-path",
    "use-compat-six",
)

#: the others: each installs its tools (pycodestyle, pylint, yamllint, voluptuous...) from PyPI into a virtual
#: environment of its own, bootstrapped with ansible-test's get-pip script (see GET_PIP)
SANITY_WITH_TOOLS = (
    "ansible-doc",
    "changelog",
    "import",
    "pep8",
    "pslint",
    "pylint",
    "runtime-metadata",
    "shellcheck",
    "validate-modules",
    "yamllint",
)

#: ansible-test bootstraps pip into each sanity environment with get-pip.py from ci-files.testing.ansible.com,
#: which is not reachable here; it runs the script it finds cached at ~/.ansible/test/cache/get_pip_X_Y.py
#: instead (its error message says to save it there). This one installs the same thing (the pip ansible-test
#: pins, and the packages it names) with uv, found the way gpuprov finds it. ansible-test passes the script
#: only its own environment variables (PATH, HOME), so uv's command and settings (UV_*, the TLS certificates
#: of this machine) are written into it.
GET_PIP = """\
import os, subprocess, sys
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel", "--disable-pip-version-check")]
env = {{**os.environ, **{env!r}}}
sys.exit(subprocess.run([*{uv!r}, "pip", "install", "--python", sys.executable, *args], env=env).returncode)
"""

USER_PLAYBOOK = """\
- name: A user's own playbook, using gpuprov's roles.
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    gpuprov_gpu_profile: rtx4090
    gpuprov_gpu_root: {root}
    gpuprov_gpu_state_dir: {state}
  tasks:
    - name: Tune the GPUs to the profile.
      ansible.builtin.include_role:
        name: gpuprov.gpu.gpuprov_gpu
    - name: Record which profile is in effect.
      ansible.builtin.include_role:
        name: gpuprov.gpu.gpuprov_gpu
        tasks_from: record
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ansible-galaxy collection build`` of the source, installed into a collections directory."""
    tmp = tmp_path_factory.mktemp("collection")
    built = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", str(SOURCE), "--output-path", str(tmp / "dist")],
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = (tmp / "dist").glob("gpuprov-gpu-*.tar.gz")
    done = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(tmp / "collections"), str(tarball)],
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tree = tmp / "collections/ansible_collections/gpuprov/gpu"
    for part in (
        "plugins/modules/gpuprov_plan.py",
        "plugins/module_utils/gpuprov_library.py",
        "plugins/callback/gpuprov_results.py",
        "roles/gpuprov_gpu/meta/argument_specs.yml",
        "roles/gpuprov_host/README.md",
        "meta/runtime.yml",
    ):
        assert (tree / part).is_file(), part
    return tmp / "collections"


@pytest.mark.skipif(os.geteuid() != 0, reason="the replay's NVML setters, like the real ones, need root")
def test_a_user_playbook_includes_the_installed_roles(installed: Path, tmp_path: Path) -> None:
    root, state, user = tmp_path / "root", tmp_path / "state", tmp_path / "user"
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/ollama").write_text("#!/bin/sh\n")  # rtx4090 serves Ollama: plans only where it is
    user.mkdir()
    gpu = tmp_path / "gpu.json"
    shutil.copy(SNAPSHOTS / "rtx4090.constructed.json", gpu)
    (user / "site.yml").write_text(USER_PLAYBOOK.format(root=root, state=state))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(installed),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "GPUPROV_NVML_REPLAY": str(gpu),
        "GPUPROV_NVML_REPLAY_ROOT": str(root),
    }
    env.pop("GPUPROV_NVML_REPLAY_AS_USER", None)
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            "site.yml",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    calls = json.loads(gpu.read_text()).get("calls", [])
    assert {"fn": "nvmlDeviceSetPowerManagementLimit", "gpu": 0, "limit_mw": 250000} in calls
    assert json.loads((state / "profile.json").read_text())["profile"] == "rtx4090"
    assert (root / "etc/systemd/system/gpuprov-gpu-settings.service").is_file()


RECORD_ONLY = """\
- name: A user's playbook that records the profile in effect alone (no plan ran before).
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Record which profile is in effect.
      ansible.builtin.include_role:
        name: gpuprov.gpu.gpuprov_gpu
        tasks_from: record
      vars:
        gpuprov_gpu_profile: rtx4090
        gpuprov_gpu_state_dir: {state}
"""


def test_the_record_entry_point_runs_without_a_plan_before_it(installed: Path, tmp_path: Path) -> None:
    """The record task is skipped when the run's plan read the same profile; with no plan, it records."""
    state = tmp_path / "state"
    (tmp_path / "record.yml").write_text(RECORD_ONLY.format(state=state))
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(installed),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
    }
    env.pop("ANSIBLE_CONFIG", None)
    proc = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            "localhost,",
            "record.yml",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert json.loads((state / "profile.json").read_text())["profile"] == "rtx4090"


def test_ansible_test_sanity_passes_on_the_installed_collection(installed: Path, tmp_path: Path) -> None:
    tree = installed / "ansible_collections/gpuprov/gpu"
    args = [arg for name in SANITY for arg in ("--test", name)]
    proc = subprocess.run(
        [
            str(BIN / "ansible-test"),
            "sanity",
            "--local",
            "--python",
            f"{sys.version_info[0]}.{sys.version_info[1]}",
            *args,
        ],
        cwd=tree,
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in SANITY:
        assert f'Running sanity test "{name}"' in proc.stdout + proc.stderr, name


@pytest.mark.network
def test_ansible_test_sanity_with_its_tools_passes_on_the_installed_collection(installed: Path, tmp_path: Path) -> None:
    from ansible_test._internal.host_configs import NativePythonConfig
    from ansible_test._internal.python_requirements import get_venv_packages

    from provision.uvtool import find_uv

    uv = find_uv()
    assert uv is not None, "uv is needed to bootstrap pip into ansible-test's sanity environments"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    pip = get_venv_packages(NativePythonConfig(version=version, path=sys.executable))["pip"]
    cache = tmp_path / ".ansible/test/cache"
    cache.mkdir(parents=True)
    uv_env = {k: v for k, v in os.environ.items() if k.startswith("UV_") or k in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    (cache / f"get_pip_{pip.replace('.', '_')}.py").write_text(GET_PIP.format(uv=uv, env=uv_env))
    tree = installed / "ansible_collections/gpuprov/gpu"
    args = [arg for name in SANITY_WITH_TOOLS for arg in ("--test", name)]
    proc = subprocess.run(
        [str(BIN / "ansible-test"), "sanity", "--local", "--python", version, *args],
        cwd=tree,
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    for name in SANITY_WITH_TOOLS:
        assert f'Running sanity test "{name}"' in proc.stdout + proc.stderr, name
    assert "Installing requirements" in proc.stdout + proc.stderr  # the tools were really installed and run


def test_ansible_lint_production_passes_from_the_root() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--nocolor"],
        cwd=ROOT,
        env={**env, "PATH": f"{BIN}:{env.get('PATH', '')}"},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr
