"""The prune verdicts on the corpus under tests/data/prune: every import style, namespace packages,
renamed distributions, transitive needs, extras, the vLLM host that needs torchvision.

Environments are real-format ``.dist-info`` directories written into a bare site-packages and read
with ``importlib.metadata`` (the same collector that runs inside a target interpreter)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from provision.prune.analysis import analyse
from provision.prune.installed import read_environment

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
PROJECTS = DATA / "projects"
_spec = importlib.util.spec_from_file_location("prune_sitebuild", DATA / "sitebuild.py")
assert _spec is not None and _spec.loader is not None
sitebuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitebuild)


def env_for(tmp_path: Path, project: str, drop: set[str] = frozenset()):  # type: ignore[assignment]
    site = sitebuild.build_site(
        tmp_path / "venv" / "lib" / "python3" / "site-packages", "corpus", sitebuild.project_dists(project) - drop
    )
    return read_environment(paths=[str(site)])


def verdicts(tmp_path: Path, project: str, root: Path = PROJECTS, project_dir: Path | None = None, **kw):  # type: ignore[no-untyped-def]
    """The report on corpus ``project`` (or a modified copy at ``project_dir``) in its environment."""
    report = analyse(project_dir or root / project, env_for(tmp_path, project), **kw)
    return report, {v.key: v for v in report.verdicts}


#: project → the distributions that must come out "safe to remove"; everything else must not
EXPECTED_REMOVABLE = {
    "import_styles": {"tqdm"},
    "namespaces": set(),
    "renamed": set(),
    "transitive": set(),
    "extras": {"six"},
    "vllm_host": set(),
    "llm_runtime": {"torchvision"},
    "transformers_vision": set(),
    "dynamic": set(),
}


@pytest.mark.parametrize("project", sorted(EXPECTED_REMOVABLE))
def test_removable_set_is_exact(tmp_path: Path, project: str) -> None:
    report, _ = verdicts(tmp_path, project)
    assert {v.key for v in report.removable} == EXPECTED_REMOVABLE[project]
    assert report.exit_code == (1 if EXPECTED_REMOVABLE[project] else 0)
    for v in report.verdicts:
        if v.status == "unknown":
            assert not v.removable


def test_every_import_style_counts_as_use(tmp_path: Path) -> None:
    _, by = verdicts(tmp_path, "import_styles")
    kinds = {k: v.used_at.kind for k, v in by.items() if v.used_at}
    assert kinds == {
        "requests": "import",
        "numpy": "from",
        "pyyaml": "import",  # inside a function
        "opencv-python-headless": "import",  # in try/except ImportError
        "scikit-learn": "import_module",
        "protobuf": "__import__",
        "nvidia-ml-py": "find_spec",
        "uvicorn": "entry-point",
        "h2": "type-checking",
        "click": "import_module (constant)",
    }
    source = (PROJECTS / "import_styles" / "src" / "styles" / "__init__.py").read_text().splitlines()
    assert by["pyyaml"].used_at.where == f"src/styles/__init__.py:{source.index('    import yaml') + 1}"
    assert by["tqdm"].status == "unused" and by["tqdm"].removable


def test_namespace_package_resolved_below_google(tmp_path: Path) -> None:
    report, by = verdicts(tmp_path, "namespaces")
    assert by["google-cloud-storage"].status == "used"
    # `from google.cloud import storage` must not count as a use of every google-* distribution
    assert by["protobuf"].status == "unused"
    assert by["googleapis-common-protos"].status == "unused"
    # ...and yet none is removable: the kept storage client needs them
    assert by["protobuf"].required_by == ["google-api-core", "googleapis-common-protos"]
    assert by["google-crc32c"].required_by == ["google-cloud-storage", "google-resumable-media"]
    assert not report.removable


def test_renamed_distributions_and_not_installed(tmp_path: Path) -> None:
    _, by = verdicts(tmp_path, "renamed")
    for key in ("pyyaml", "opencv-python-headless", "nvidia-ml-py", "scikit-learn"):
        assert by[key].status == "used", key
    assert by["gitpython"].status == "used"  # not installed: the exceptions list maps `git`
    assert "exceptions list" in by["gitpython"].used_at.kind
    assert by["leftpad-nowhere"].status == "unknown" and not by["leftpad-nowhere"].removable


def test_transitive_need_is_kept_with_reason(tmp_path: Path) -> None:
    _, by = verdicts(tmp_path, "transitive")
    assert by["urllib3"].status == "unused"
    assert by["urllib3"].required_by == ["requests"]
    assert "needed by requests" in by["urllib3"].reason


def test_extras_optional_backends_plugins_tools(tmp_path: Path) -> None:
    _, by = verdicts(tmp_path, "extras")
    assert by["h2"].required_by == ["httpx"]  # through the declared extra httpx[http2]
    assert by["psycopg2"].optional_for == ["SQLAlchemy[postgresql]"]
    assert by["click"].optional_for == ["httpx[cli]"]
    # a pytest plugin: pytest (kept) loads everything in its entry point group, no import needed
    assert by["pytest-cov"].status == "used" and by["pytest-cov"].used_at.kind == "plugin loaded by pytest"
    assert by["pytest-cov"].used_at.where == "entry point group pytest11"
    assert by["ruff"].status == "used" and by["ruff"].used_at.kind == "tool-config"
    assert by["pytest"].status == "used"
    assert by["six"].groups == ["optional:cli"]


def test_vllm_host_keeps_torchvision(tmp_path: Path) -> None:
    report, by = verdicts(tmp_path, "vllm_host")
    assert by["torchvision"].status == "unused"
    assert by["torchvision"].removable is False
    assert by["torchvision"].required_by == ["vllm"]
    assert by["torchaudio"].required_by == ["vllm"]
    assert report.exit_code == 0


def test_seed_case_torchvision_removable_with_bytes(tmp_path: Path) -> None:
    """shared/seeds/004: torchvision declared, never imported, nothing else needs it."""
    report, by = verdicts(tmp_path, "llm_runtime")
    tv = by["torchvision"]
    assert tv.removable
    assert tv.record_bytes is not None and tv.record_bytes > 200_000  # the padded _C.so stand-in
    assert [n for n, _ in tv.orphans] == ["pillow"]  # only torchvision needed it
    assert report.removable_bytes == tv.total_bytes
    assert by["numpy"].status == "used"  # torchvision needs numpy too, but so does the code


def test_optional_backends_of_transformers_are_kept(tmp_path: Path) -> None:
    _, by = verdicts(tmp_path, "transformers_vision")
    assert "transformers[torch-vision]" in by["torchvision"].optional_for
    assert "transformers[torch]" in by["torch"].optional_for


def test_dynamic_import_makes_unused_unknown(tmp_path: Path) -> None:
    report, by = verdicts(tmp_path, "dynamic")
    assert report.dynamic_imports == ["loader.py:6"]
    assert by["six"].status == "unknown" and "run time" in by["six"].reason


def test_not_installed_dependency_is_never_removable(tmp_path: Path) -> None:
    env = env_for(tmp_path, "llm_runtime", drop={"torchvision"})
    by = {v.key: v for v in analyse(PROJECTS / "llm_runtime", env).verdicts}
    assert by["torchvision"].status == "unknown" and not by["torchvision"].removable


def test_unparsable_files_reported_and_line_scanned(tmp_path: Path) -> None:
    proj = tmp_path / "unparsable"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "u"\nversion = "0"\ndependencies = ["PyYAML", "six", "tqdm"]\n'
    )
    # Python 2 with only import statements: read from the text (provision.prune.lexscan), not listed
    (proj / "legacy.py").write_text('import yaml\nprint "python 2"\n')
    # Python 2 with an import call: needs the parser, which refuses it: listed, read line by line
    (proj / "legacy_calls.py").write_text('import yaml\n__import__("os")\nprint "python 2"\n')
    (proj / "nul.py").write_bytes(b"from six import moves\n\x00\n")
    (proj / "latin.py").write_bytes(b'# -*- coding: utf-8 -*-\nimport os\nx = "\xff\xfe"\n')
    report, by = verdicts(tmp_path / "env", "unparsable", root=tmp_path)
    assert {f for f, _ in report.unparsed} == {"legacy_calls.py", "nul.py", "latin.py"}
    assert (by["pyyaml"].used_at.kind, by["pyyaml"].used_at.where) == ("import", "legacy.py:1")
    assert by["six"].used_at.kind == "unparsed-file"
    assert [v.key for v in report.removable] == ["tqdm"]


def test_ignore_option_and_config(tmp_path: Path) -> None:
    report, by = verdicts(tmp_path, "llm_runtime", ignore=("TorchVision",))
    assert by["torchvision"].ignored and not by["torchvision"].removable
    assert report.exit_code == 0
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = ["torch", "torchvision"]\n'
        '[tool.gpuprov.prune]\nignore = ["torchvision", "not-declared"]\n'
    )
    (proj / "m.py").write_text("import torch\n")
    report = analyse(proj, env_for(tmp_path / "e2", "llm_runtime"))
    assert not report.removable
    assert report.ignored_unknown == ["not-declared"]


def test_json_schema(tmp_path: Path) -> None:
    report, _ = verdicts(tmp_path, "vllm_host")
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["exit_code"] == 0
    for item in payload["dependencies"]:
        assert {"name", "status", "removable", "required_by", "bytes"} <= set(item)
        assert item["status"] in ("used", "unused", "unknown")
        assert isinstance(item["removable"], bool) and isinstance(item["bytes"], int)
        assert isinstance(item["required_by"], list)
    tv = next(i for i in payload["dependencies"] if i["name"] == "torchvision")
    assert tv["required_by"] == ["vllm"] and tv["removable"] is False


def test_tool_config_files_count_as_use(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(PROJECTS / "extras", proj)
    pyproject = proj / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[tool.ruff]", "[tool.other]"))
    _, by = verdicts(tmp_path / "a", "extras", project_dir=proj)
    assert by["ruff"].status == "unused"  # nothing configures or runs it any more
    (proj / ".ruff.toml").write_text("line-length = 100\n")
    _, by = verdicts(tmp_path / "b", "extras", project_dir=proj)
    assert by["ruff"].status == "used" and by["ruff"].used_at.where == ".ruff.toml"
    (proj / ".ruff.toml").unlink()
    (proj / "setup.cfg").write_text("[tool:ruff]\nx = 1\n")
    _, by = verdicts(tmp_path / "c", "extras", project_dir=proj)
    assert by["ruff"].status == "used" and by["ruff"].used_at.where.startswith("setup.cfg")


def test_commands_python_m_and_subprocess_literals_count_as_use(tmp_path: Path) -> None:
    """import_styles' environment has uvicorn (a console script) and tqdm (one too)."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = ["uvicorn", "tqdm", "PyYAML", "six"]\n'
    )
    (proj / "Procfile").write_text("web: uvicorn app:api --port 8000\n")
    (proj / "scripts").mkdir()
    (proj / "scripts" / "lint").write_text("#!/bin/sh\npython3 -m yaml.cli check\n")
    (proj / "run.py").write_text('import subprocess\nsubprocess.run(["tqdm", "--help"], check=False)\n')
    by = {v.key: v for v in analyse(proj, env_for(tmp_path / "env", "import_styles")).verdicts}
    assert by["uvicorn"].used_at.where == "Procfile:1" and by["uvicorn"].used_at.kind == "command"
    assert by["tqdm"].used_at.kind == "command"  # a string literal run through subprocess
    assert by["tqdm"].used_at.where == "run.py:2"  # where the literal is
    assert by["pyyaml"].used_at.where == "scripts/lint:2" and by["pyyaml"].used_at.kind == "python -m"
    assert by["six"].status == "unknown"  # not in this environment


def test_the_projects_own_installed_metadata_is_not_a_requirer(tmp_path: Path) -> None:
    """`uv sync` installs the project itself (editable): its Requires-Dist repeats every declared
    dependency, torchvision included, and must not keep them."""
    site = sitebuild.build_site(tmp_path / "site", "corpus", sitebuild.project_dists("llm_runtime"))
    sitebuild.write_dist(
        site,
        {
            "name": "llm-runtime",
            "version": "0.1.0",
            "files": ["_llm_runtime.pth"],
            "requires": ["torch==2.7.1", "torchvision==0.22.1", "numpy"],
        },
    )
    (site / "_llm_runtime.pth").write_text(str(PROJECTS / "llm_runtime" / "src") + "\n")
    env = read_environment(paths=[str(site)])
    assert env.providers("runtime") == {"llm-runtime"}  # the editable install's .pth is followed
    by = {v.key: v for v in analyse(PROJECTS / "llm_runtime", env).verdicts}
    assert by["torchvision"].removable and by["torchvision"].required_by == []


def test_distribution_sharing_files_with_a_kept_one_is_not_removable(tmp_path: Path) -> None:
    """nvidia-ml-py3 and nvidia-ml-py both install pynvml.py: uninstalling the unused, deprecated one
    deletes the file the kept one needs (pitfall 2 of the research notes)."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "0"\ndependencies = ["requests", "nvidia-ml-py3"]\n'
    )
    (proj / "m.py").write_text("import requests\n")
    site = sitebuild.build_site(tmp_path / "site", "corpus", sitebuild.project_dists("transitive") | {"nvidia-ml-py3"})
    by = {v.key: v for v in analyse(proj, read_environment(paths=[str(site)])).verdicts}
    assert by["nvidia-ml-py3"].removable  # alone, it can go
    sitebuild.write_dist(site, next(d for d in sitebuild.load_spec("corpus") if d["name"] == "nvidia-ml-py"))
    by = {v.key: v for v in analyse(proj, read_environment(paths=[str(site)])).verdicts}
    v = by["nvidia-ml-py3"]
    assert not v.removable and v.shares_files_with == ["nvidia-ml-py"] and "pynvml.py" in v.reason
