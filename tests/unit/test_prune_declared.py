"""Declared-dependency readers (PEP 621, extras, PEP 735, requirements files) and the text edits
``--apply`` makes to them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement

from provision.errors import UsageError
from provision.prune.declared import logical_lines, read_declared, read_requirements_file
from provision.prune.removal import remove_from_pyproject, remove_requirement_lines

PYPROJECT = """\
[project]
name = "demo"
version = "0.1"
dependencies = [
    "torch>=2.7",
    "Torch_Vision ; sys_platform == 'linux'",  # odd spelling: normalised
]

[project.optional-dependencies]
audio = ["torchaudio"]

[dependency-groups]
test = ["pytest>=8"]
dev = [{ include-group = "test" }, "ruff", "demo[audio]"]
bad = [{ include-group = "nowhere" }]

[tool.uv]
dev-dependencies = ["mypy"]
"""


def test_pyproject_all_sources(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    d = read_declared(tmp_path)
    deps = d.dependencies
    assert set(deps) == {"torch", "torch-vision", "torchaudio", "pytest", "ruff", "mypy"}  # not demo itself
    assert [x.group for x in deps["torch"].declarations] == ["project"]
    assert deps["torch"].declarations[0].line == 5
    assert [x.group for x in deps["torchaudio"].declarations] == ["optional:audio"]
    assert [x.group for x in deps["pytest"].declarations] == ["group:test"]  # declared where it lives
    assert [x.group for x in deps["mypy"].declarations] == ["uv-dev"]
    assert any("nowhere" in why for _, _, why in d.problems)


def test_requirements_files(tmp_path: Path) -> None:
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.txt").write_text("numpy==2.2.1 \\\n    --hash=sha256:abc\n")
    (tmp_path / "requirements.txt").write_text(
        "# comment\n"
        "-r requirements/base.txt\n"
        "--index-url https://example.invalid/simple\n"
        "-c constraints.txt\n"
        "requests[socks]>=2 ; python_version >= '3.8'  # inline comment\n"
        "-e git+https://example.invalid/x.git#egg=editable-thing\n"
        "-e ./local\n"
        "pkg @ https://example.invalid/pkg-1.0-py3-none-any.whl\n"
        "not a requirement !!\n"
        "-rrequirements-dev.txt\n"
    )
    (tmp_path / "requirements-dev.txt").write_text("pytest\n-r requirements.txt\n")  # cycle: read once
    d = read_declared(tmp_path)
    assert set(d.dependencies) == {"numpy", "requests", "editable-thing", "pkg", "pytest"}
    assert d.dependencies["requests"].extras == {"socks"}
    assert d.dependencies["numpy"].declarations[0].where == "requirements/base.txt:1"
    whys = [why for _, _, why in d.problems]
    assert any("without #egg" in w for w in whys) and any("not a requirement" in w for w in whys)
    assert d.requirements_files == ["requirements-dev.txt", "requirements.txt", "requirements/base.txt"]


def test_bad_pyproject_is_usage_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        read_declared(tmp_path)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_property_requirements_reader_never_crashes(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    root = tmp_path_factory.mktemp("req")
    (root / "requirements.txt").write_text(text, encoding="utf-8", errors="surrogatepass")
    reqs, problems, _ = read_requirements_file(root / "requirements.txt", root)
    for req, decl in reqs:
        assert isinstance(req, Requirement) and decl.line >= 1
    for where, _, why in problems:
        assert where.startswith("requirements.txt") and why


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a==1", "b>=2 \\", "  --hash=x", "", "# c", "c", "d \\", "e"]), max_size=15))
def test_property_removing_a_line_keeps_the_others(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    logical = logical_lines(text)
    for start, content in logical:
        if not content.strip() or content.strip().startswith("#"):
            continue
        after = remove_requirement_lines(text, {start})
        assert [c for _, c in logical_lines(after)].count(content) == [c for _, c in logical].count(content) - 1


def test_remove_from_pyproject_keeps_toml_valid() -> None:
    text = PYPROJECT + '\n[project.inline]\nx = ["a", "b"]\n'
    out = remove_from_pyproject(text, ["Torch_Vision ; sys_platform == 'linux'", "torchaudio"])
    data = tomllib.loads(out)
    assert data["project"]["dependencies"] == ["torch>=2.7"]
    assert data["project"]["optional-dependencies"]["audio"] == []
    assert "odd spelling" not in out  # its comment went with its line
    assert remove_from_pyproject('deps = ["a", "b"]\n', ["b"]) == 'deps = ["a"]\n'  # no dangling comma (issue 18)
    assert tomllib.loads(remove_from_pyproject('deps = ["a", "b"]\n', ["a"]))["deps"] == ["b"]
