"""Reading a Python environment from metadata and files, in-process and in another interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provision import pyenv, pyenvrun


def install_fake(site: Path, name: str, version: str, files: dict[str, bytes | str]) -> None:
    """A distribution as an installer leaves it: dist-info with METADATA and RECORD, plus its files."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    record = []
    for rel, content in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        record.append(f"{rel},,")
    record.append(f"{info.name}/METADATA,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


TORCH_VERSION_PY = """from typing import Optional

__all__ = ['__version__', 'debug', 'cuda', 'git_version', 'hip', 'xpu']
__version__ = '2.7.1+cu128'
debug = False
cuda: Optional[str] = '12.8'
git_version = 'e2d141dbde55c2a4370fac5165b0561b6af4798b'
hip: Optional[str] = None
xpu: Optional[str] = None
"""

EXPLODING_INIT = "raise RuntimeError('gpuprov must never import this package')\n"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "v")], check=True)
    site = next((root / "v/lib").glob("python3*/site-packages"))
    install_fake(
        site,
        "torch",
        "2.7.1+cu128",
        {"torch/__init__.py": EXPLODING_INIT, "torch/version.py": TORCH_VERSION_PY},
    )
    install_fake(
        site,
        "llama-cpp-python",
        "0.3.16",
        {
            "llama_cpp/__init__.py": EXPLODING_INIT,
            "llama_cpp/lib/libllama.so": b"\x7fELF...libggml.so\x00libggml-base.so\x00",
            "llama_cpp/lib/libggml-cuda.so": b"\x7fELF...libcudart.so.12\x00libcublas.so.12\x00",
        },
    )
    install_fake(site, "nvidia-ml-py", "12.575.51", {"pynvml.py": "# bindings\n"})
    install_fake(site, "nvidia-ml-py3", "7.352.0", {"pynvml.py": "# old bindings\n"})
    install_fake(site, "nvidia-cublas-cu12", "12.8.3.14", {"nvidia/cublas/__init__.py": ""})
    return root / "v/bin/python"


def test_other_interpreter_is_read_without_importing(venv):
    env = pyenv.read_environment(str(venv))
    assert env.error is None
    assert env.interpreter == str(venv)
    torch = env.packages["torch"]
    assert (torch.version, torch.cuda_variant) == ("2.7.1+cu128", "cu128")
    assert env.torch_cuda == "12.8" and env.torch_hip is None
    assert env.llama_cpp_cuda is True
    assert env.pynvml_providers == ["nvidia-ml-py", "nvidia-ml-py3"]
    assert env.packages["nvidia-cublas-cu12"].version == "12.8.3.14"


def test_cpu_builds_are_recognised(tmp_path):
    site = tmp_path / "site"
    install_fake(site, "torch", "2.7.1", {"torch/version.py": TORCH_VERSION_PY.replace("'12.8'", "None")})
    install_fake(site, "llama-cpp-python", "0.3.16", {"llama_cpp/lib/libllama.so": b"\x7fELF libggml-cpu.so\x00"})
    out = subprocess.run(
        [sys.executable, "-c", Path(pyenv.__file__).read_text() + "\nimport json; print(json.dumps(collect()))"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    import json

    data = json.loads(out.stdout)
    assert data["torch_cuda"] is None
    assert data["llama_cpp_cuda"] is False
    assert data["packages"]["torch"]["cuda_variant"] is None


def test_current_interpreter_in_process():
    env = pyenv.read_environment(None)
    assert env.interpreter == sys.executable
    assert "nvidia-ml-py" in env.packages
    assert env.pynvml_providers == ["nvidia-ml-py"]


@pytest.mark.parametrize(
    "python, expect",
    [
        ("/nonexistent/python", "no such interpreter"),
        ("TEXTFILE", "cannot run"),
        ("/bin/false", "failed"),
        ("/bin/echo", "did not answer with JSON"),
    ],
)
def test_bad_interpreter_is_an_error_in_the_snapshot(python, expect, tmp_path):
    if python == "TEXTFILE":
        python = str(tmp_path / "notes.txt")
        Path(python).write_text("hello\n")
        Path(python).chmod(0o755)
    env = pyenv.read_environment(python)
    assert env.error and expect in env.error
    assert env.packages == {}


def test_py_assign_forms():
    assert pyenv._py_assign("cuda = '11.8'\n", "cuda") == "11.8"
    assert pyenv._py_assign('cuda: Optional[str] = "12.1"\n', "cuda") == "12.1"
    assert pyenv._py_assign("cuda: Optional[str] = None\n", "cuda") is None
    assert pyenv._py_assign("", "cuda") is None


def test_doctor_and_prune_read_the_same_environment_through_one_collector(venv):
    """doctor's view (collect) and prune's (collect_distributions) come from the same file, run the
    same way in the other interpreter, and agree on every distribution's version."""
    from provision.prune.installed import read_environment as prune_environment

    doctor = pyenv.read_environment(str(venv))
    prune = prune_environment(str(venv))
    assert {k: p.version for k, p in doctor.packages.items()} == {k: d.version for k, d in prune.dists.items()}
    assert prune.dists["nvidia-ml-py"].shallow_module_files == ["pynvml.py"]
    failed = pyenvrun.run_collector(str(venv.parent / "nope"), "collect_distributions()", 5)
    assert failed == {"error": f"{venv.parent / 'nope'}: no such interpreter"}
