"""scripts/wheelhouse's second mode (issue 16): an engine's planned set (or any requirements) resolved with
uv pip compile for the hosts' Python and platform, exactly those wheels downloaded, and an install from the
folder that works with no index, no cache and uv offline. The download test uses a small set (requests and
its four dependencies, one of them a manylinux wheel); the vLLM set, GBs, is resolved only (--resolve-only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests.integration.test_compat_uv_compile import _uv
from tests.integration.test_stack_resolution import CASES, assert_plan_resolved, compat_plan, compiled_set

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "wheelhouse"
ENV = {**os.environ, "PYTHON": sys.executable}
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def wheelhouse(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def small_wheelhouse(tmp_path: Path, constraints: str, *args: str) -> tuple[Path, dict[str, str]]:
    """scripts/wheelhouse --requirements for ``requests`` (and its four dependencies) with ``constraints``, for
    this interpreter's Python and (no --platform) this machine's glibc: DIR and its compiled set (name -> version),
    checked to be exactly DIR's wheels."""
    (tmp_path / "small.in").write_text("requests\n", encoding="utf-8")
    (tmp_path / "small.txt").write_text(constraints, encoding="utf-8")
    out = tmp_path / "wheels"
    proc = wheelhouse(
        *("--requirements", str(tmp_path / "small.in"), "--constraints", str(tmp_path / "small.txt")),
        *("--python-version", THIS_PYTHON, "--out", str(out), *args),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    compiled = {name: versions[0][0] for name, versions in compiled_set((out / "requirements.txt").read_text()).items()}
    assert set(compiled) == {"requests", "urllib3", "idna", "certifi", "charset-normalizer"}, compiled
    wheels = {canonicalize_name(w.name.split("-")[0]): str(parse_wheel_filename(w.name)[1]) for w in out.glob("*.whl")}
    assert wheels == compiled, "exactly the compiled set, one wheel each"
    return out, compiled


def offline_install(out: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh venv, DIR/requirements.txt installed from DIR alone: no index, an empty cache, uv offline."""
    venv = tmp_path / "venv"
    subprocess.run([*_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    offline = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "empty-cache"), "UV_OFFLINE": "1"}
    python = str(venv / "bin/python")
    requirements = str(out / "requirements.txt")
    install = subprocess.run(
        [*_uv(), "pip", "install", "--python", python, "--no-index", "--find-links", str(out), "-r", requirements],
        capture_output=True,
        text=True,
        env=offline,
    )
    assert install.returncode == 0, install.stderr
    freeze = subprocess.run([*_uv(), "pip", "freeze", "--python", python], capture_output=True, text=True, check=True)
    return venv, dict(line.split("==") for line in freeze.stdout.split())


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.slow
def test_a_small_set_downloads_and_installs_offline(tmp_path: Path) -> None:
    """CI cost: one resolution and five small wheels (~1 MB), a venv, an offline install: ~5 s. This machine's
    glibc is newer than the manylinux_2_28 of charset-normalizer's wheel: the download must take every older
    manylinux tag too (pip matches only the tags it is given)."""
    out, compiled = small_wheelhouse(tmp_path, "urllib3<2.3\n")
    assert compiled["urllib3"].startswith("2.2."), compiled  # the constraint held
    assert any("manylinux" in w.name for w in out.glob("*.whl"))
    venv, installed = offline_install(out, tmp_path)
    assert installed == compiled
    ok = subprocess.run([str(venv / "bin/python"), "-c", "import requests, charset_normalizer"], capture_output=True)
    assert ok.returncode == 0, ok.stderr


def local_index(root: Path, name: str, version: str) -> str:
    """A PEP 503 index in a folder (file:// URL) holding one pure wheel of ``name`` ``version``: a second index
    with its own build of a package PyPI also has, like PyTorch's index and its torch+cuXXX."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n'.encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    digest = {p: base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode() for p, b in files.items()}
    record = "".join(f"{p},sha256={digest[p]},{len(b)}\n" for p, b in files.items()) + f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record.encode()
    project = root / "simple" / name
    project.mkdir(parents=True)
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(project / wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    (project / "index.html").write_text(f'<html><body><a href="{wheel}">{wheel}</a></body></html>\n')
    (root / "simple" / "index.html").write_text(f'<html><body><a href="{name}/">{name}</a></body></html>\n')
    return (root / "simple").as_uri()


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.slow
def test_a_pin_from_an_extra_index_comes_from_it(tmp_path: Path) -> None:
    """--extra-index-url (an engine's plan passes its pins' index so): idna pinned to the second index's own build
    resolves (uv) and downloads (pip) from there, once, and installs offline; the rest comes from PyPI."""
    index = local_index(tmp_path / "index", "idna", "3.20+gpuprov")
    out, compiled = small_wheelhouse(tmp_path, "idna==3.20+gpuprov\n", "--extra-index-url", index)
    assert compiled["idna"] == "3.20+gpuprov", compiled
    assert [w.name for w in out.glob("idna-*.whl")] == ["idna-3.20+gpuprov-py3-none-any.whl"]
    _, installed = offline_install(out, tmp_path)
    assert installed == compiled


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.slow
def test_the_engine_set_resolves_without_downloading(tmp_path: Path) -> None:
    """--engine vllm for the RTX 4090 Laptop on 570 (the first case of test_stack_resolution): DIR gets the
    plan, its inputs and the compiled set holding every pin (one torch), and no wheel. CI cost: ~15 s."""
    args = CASES["rtx4090-laptop-570"]
    out = tmp_path / "vllm"
    proc = wheelhouse(
        "--engine",
        "vllm",
        *args,
        "--python-version",
        "3.12",
        "--platform",
        "x86_64-manylinux_2_35",
        "--resolve-only",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan, constraints = compat_plan(args)
    assert json.loads((out / "plan.json").read_text()) == plan
    assert (out / "constraints.txt").read_text() == constraints
    assert (out / "requirements.in").read_text().split() == plan["install"]
    assert_plan_resolved(plan, compiled_set((out / "requirements.txt").read_text()))
    assert not list(out.glob("*.whl"))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "rc", "message"),
    [
        (["--engine", "vllm", "--cc", "6.1"], 1, "no vllm release in the matrix supports compute capability 6.1"),
        (["--engine", "ollama", "--cc", "8.9"], 1, "the ollama plan installs no Python package"),
        (["--engine", "nosuch", "--cc", "8.9"], 2, "nosuch"),
        (["--engine", "vllm", "--platform", "win_amd64"], 2, "--platform win_amd64: give ARCH-manylinux_2_N"),
        (["--engine", "vllm", "--python-version", "3"], 2, "--python-version 3: give X.Y"),
        (["--engine", "vllm", "--requirements", "r.in"], 2, "give one of --engine ENGINE and --requirements FILE"),
        (["--requirements", "no-such.in"], 2, "no-such.in: no such file"),
        (["--engine", "vllm", "--bogus"], 2, "unknown argument '--bogus'"),
        (["--engine"], 2, "--engine needs a value"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_folder(tmp_path: Path, args: list[str], rc: int, message: str) -> None:
    out = tmp_path / "out"
    proc = wheelhouse(*args, *(["--out", str(out)] if args != ["--engine"] else []), timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == rc and len(lines) == 1 and message in lines[0], (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert not out.exists()
