"""``compat check --python`` and :func:`provision.compat.installed.check_environment`: the verdict on what is
installed in a real ``uv venv`` (distributions as an installer leaves them: dist-info METADATA and RECORD, the
package's files) equals the verdict ``compat check --with`` gives for the same versions on the same host, and
nothing of those packages is imported (each ``__init__`` writes a marker and raises)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.compat.installed import InterpreterError, check_environment, read_installed
from provision.compat.target import apply_overrides, target_from_snapshot
from provision.compat.verdict import check
from provision.snapshot import PythonEnv, Snapshot
from provision.uvtool import find_uv
from tests.conftest import SNAPSHOTS
from tests.unit.test_pyenv import TORCH_VERSION_PY, install_fake


def load_snapshot(name: str) -> Snapshot:
    return Snapshot.load(SNAPSHOTS / f"{name}.json")


def marker_init(marker: Path) -> str:
    """An ``__init__`` that leaves ``marker`` behind and raises: imported at all, the test sees it."""
    return f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\nraise RuntimeError('gpuprov must never import this')\n"


def torch_version_py(cuda: str | None) -> str:
    return TORCH_VERSION_PY.replace("cuda: Optional[str] = '12.8'", f"cuda: Optional[str] = {cuda!r}")


def make_venv(where: Path, packages: dict[str, str], marker: Path) -> str:
    """A real ``uv venv`` (this interpreter's Python) holding ``packages`` (name → version); its python."""
    uv = find_uv()
    assert uv is not None, "uv is a declared dependency of gpuprov"
    subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(where)], check=True, capture_output=True)
    site = next((where / "lib").glob("python3*/site-packages"))
    for name, version in packages.items():
        module = name.replace("-python", "").replace("-", "_")
        files = {f"{module}/__init__.py": marker_init(marker)}
        if name == "torch":
            local = version.partition("+")[2]
            cuda = f"{local[2:-1]}.{local[-1]}" if local.startswith("cu") else None
            files["torch/version.py"] = torch_version_py(cuda)
        install_fake(site, name, version, files)
    return str(where / "bin" / "python")


CASES = [
    # the brief's case: torch 2.7.1 (CUDA 12.8) and flashinfer-python 0.7.4 on an RTX 4090 Laptop, driver 560
    ("rtx4090-laptop.constructed", {"torch": "2.7.1+cu128", "flashinfer-python": "0.7.4"}, "ok"),
    # a CUDA 13 torch on a 535 driver: "CUDA driver version is insufficient"
    ("a100.published", {"torch": "2.9.0+cu130"}, "incompatible"),
    # vLLM 0.10.1 pins torch 2.7.1: with torch 2.8.0 installed the pair disagrees
    ("h100.published", {"torch": "2.8.0+cu128", "vllm": "0.10.1"}, "incompatible"),
    # a vLLM newer than the matrix: never guessed compatible
    ("h100.published", {"torch": "2.9.0+cu129", "vllm": "99.0.0"}, "unknown"),
]


@pytest.mark.parametrize(("snapshot", "packages", "verdict"), CASES)
def test_installed_set_gets_the_verdict_of_the_same_versions_given_with_with(
    tmp_path: Path, snapshot: str, packages: dict[str, str], verdict: str
) -> None:
    marker = tmp_path / "imported"
    python = make_venv(tmp_path / "v", packages, marker)
    snap = load_snapshot(snapshot)

    report = check_environment(python, snap)

    # the same versions as what-if flags, on the same host with none of its own packages
    bare = dataclasses.replace(snap, python=PythonEnv())
    what_if = check(apply_overrides(target_from_snapshot(bare), packages=[f"{n}=={v}" for n, v in packages.items()]))
    assert report.verdict == what_if.verdict == verdict
    assert report.problems == what_if.problems
    assert report.checked == what_if.checked
    assert report.interpreter == python and report.python_version == ".".join(map(str, sys.version_info[:3]))
    assert not marker.exists(), marker.read_text()


def test_the_snapshots_own_packages_are_not_checked(tmp_path: Path) -> None:
    """The snapshot says vLLM 0.10.1 is installed (gpuprov's own environment when it was recorded): only the
    interpreter's set counts."""
    python = make_venv(tmp_path / "v", {"torch": "2.7.1+cu128"}, tmp_path / "imported")
    snap = load_snapshot("rtx4090-laptop.constructed")
    assert "vllm" in snap.python.packages
    report = check_environment(python, snap)
    assert not any("vllm" in pair for pair in report.checked), report.checked
    assert any(pair.startswith("torch 2.7.1+cu128 ↔ driver") for pair in report.checked)


def test_a_cpu_torch_in_the_environment_is_seen_from_its_version_py(tmp_path: Path) -> None:
    """torch/version.py says cuda None: a CPU build, incompatible with using the GPU (read from the file)."""
    python = make_venv(tmp_path / "v", {"torch": "2.7.1"}, tmp_path / "imported")
    env = read_installed(python)
    assert env.torch_cuda is None and env.packages["torch"].version == "2.7.1"
    report = check_environment(python, load_snapshot("rtx4090-laptop.constructed"))
    assert report.verdict == "incompatible"
    assert any(p.kind.startswith("torch") and "CPU" in p.reason for p in report.problems), report.problems


def test_an_environment_without_any_tracked_package_is_unknown(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v", {"requests": "2.32.3"}, tmp_path / "imported")
    report = check_environment(python, load_snapshot("h100.published"))
    assert report.verdict == "unknown" and not report.checked
    assert any("nothing to check" in line for line in report.skipped)


def _not_python(tmp_path: Path) -> Path:
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    return script


def _plain_file(tmp_path: Path) -> Path:
    text = tmp_path / "notes.txt"
    text.write_text("not a program\n")
    return text


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda t: t / "nowhere" / "python", "no such file"),
        (lambda t: t, "is a directory, not a Python interpreter"),
        (_not_python, "not a Python interpreter whose packages gpuprov can read"),
        (_plain_file, "not a Python interpreter whose packages gpuprov can read"),
    ],
)
def test_library_refuses_what_is_not_an_interpreter_in_one_line(tmp_path: Path, make, says: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InterpreterError) as info:
        check_environment(str(make(tmp_path)), load_snapshot("h100.published"))
    assert says in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_a_venv_directory_names_its_interpreter(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v", {}, tmp_path / "imported")
    with pytest.raises(InterpreterError, match=f"its interpreter: {python}"):
        read_installed(str(tmp_path / "v"))


# -- the CLI, as a user runs it ------------------------------------------------------------------------


def gpuprov(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GPUPROV_NVML_REPLAY"}
    proc = subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_cli_checks_the_interpreters_set_json(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    python = make_venv(tmp_path / "v", {"torch": "2.9.0+cu130", "vllm": "0.10.1"}, marker)
    src = str(SNAPSHOTS / "a100.published.json")
    proc = gpuprov("compat", "check", "--python", python, "--from", src, "--json")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    data = json.loads(proc.stdout)
    assert data["verdict"] == "incompatible"
    assert data["python"] == {"interpreter": python, "python_version": ".".join(map(str, sys.version_info[:3]))}
    assert any(p["pair"].startswith("torch 2.9.0+cu130 ↔ driver 535") for p in data["problems"])
    assert not marker.exists()
    # the table names the interpreter; the what-if flags still apply on top (a driver that fits CUDA 13)
    table = gpuprov("compat", "check", "--python", python, "--from", src)
    assert table.returncode == 1 and f"installed in {python}" in table.stdout
    newer = json.loads(
        gpuprov("compat", "check", "--python", python, "--from", src, "--driver", "580.65.06", "--json").stdout
    )
    assert "torch 2.9.0+cu130 ↔ driver 580.65.06" in newer["checked"]
    assert not any("driver" in p["pair"] for p in newer["problems"] if p["severity"] == "incompatible")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda t: t / "nowhere" / "python", "no such file"),
        (lambda t: t, "is a directory"),
        (_not_python, "not a Python interpreter"),
    ],
)
def test_cli_bad_python_is_one_line_exit_2(tmp_path: Path, make, says: str) -> None:  # type: ignore[no-untyped-def]
    proc = gpuprov("compat", "check", "--python", str(make(tmp_path)), "--json")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpuprov: error: --python ") and says in lines[0], proc.stderr


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.text(alphabet="/.a\x00", max_size=40),
        st.builds(lambda n: "/" + "x" * n, st.integers(200, 5000)),
        st.builds(lambda n: "/".join(["d" * 255] * n), st.integers(1, 20)),
    )
)
def test_any_python_text_is_refused_in_one_line_or_read(text: str) -> None:
    """What a user may pass as --python: an interpreter's packages, or InterpreterError in one line."""
    try:
        env = read_installed(text)
    except InterpreterError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 500 and exc.exit_code == 2
    else:  # only a real interpreter answers (e.g. a relative name that is one)
        assert env.error is None and env.python_version


def test_the_installed_set_is_what_uv_lists(tmp_path: Path) -> None:
    """Oracle: uv's own reading of the environment (``uv pip list --format json``) names the same
    distributions and versions that the check reads."""
    from packaging.utils import canonicalize_name

    packages = {"torch": "2.7.1+cu128", "flashinfer-python": "0.7.4", "vllm": "0.10.1", "xformers": "0.0.31"}
    python = make_venv(tmp_path / "v", packages, tmp_path / "imported")
    uv = find_uv()
    assert uv is not None
    listed = subprocess.run(
        [*uv, "pip", "list", "--python", python, "--format", "json"], check=True, capture_output=True, text=True
    )
    by_uv = {str(canonicalize_name(p["name"])): p["version"] for p in json.loads(listed.stdout)}
    env = read_installed(python)
    assert {k: p.version for k, p in env.packages.items()} == by_uv
    assert by_uv == packages  # nothing else in a bare uv venv (no pip, no setuptools)
    assert not (tmp_path / "imported").exists()
