"""``gpuprov prune`` must never call a used dependency "safe to remove": build/dist folders below the
root, unparsable Requires-Dist lines, uses that are not imports (package data, ``pydoc.locate``,
config ``_target_`` paths, tzdata), FIFOs, and malformed pyproject values (a clear error, exit 2)."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.cli import main
from provision.errors import UsageError
from provision.prune.analysis import analyse, read_config
from provision.prune.declared import read_declared
from provision.prune.graph import requirement_name
from provision.prune.imports import scan_project
from provision.prune.installed import InstalledEnv, read_environment
from provision.prune.interpreter import choose_interpreter
from provision.prune.mentions import text_files
from provision.prune.removal import refuse_own_environment
from provision.prune.scanresult import ScanResult
from provision.prune.sourcescan import scan_source
from provision.prune.sourcetree import only_defines, root_modules

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
_spec = importlib.util.spec_from_file_location("prune_sitebuild_safety", DATA / "sitebuild.py")
assert _spec is not None and _spec.loader is not None
sitebuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitebuild)


def dist(name: str, files: list[str], requires: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "files": files, "requires": requires or []}


def make_env(tmp_path: Path, *dists: dict[str, Any]) -> InstalledEnv:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for d in dists:
        sitebuild.write_dist(site, d)
    return read_environment(paths=[str(site)])


def project(tmp_path: Path, deps: list[str], files: dict[str, str]) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    quoted = ", ".join(f'"{d}"' for d in deps)
    (root / "pyproject.toml").write_text(f'[project]\nname = "proj"\nversion = "0"\ndependencies = [{quoted}]\n')
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def verdicts(root: Path, env: InstalledEnv) -> dict[str, Any]:
    return {v.key: v for v in analyse(root, env).verdicts}


SIX = dist("six", ["six.py"])
TQDM = dist("tqdm", ["tqdm/__init__.py"])


# --- gap 2: build/ and dist/ are skipped only at the project root -------------------------------


def test_build_and_dist_below_the_root_are_scanned(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ["six", "tqdm"],
        {
            "src/pkg/__init__.py": "",
            "src/pkg/build/steps.py": "import six\n",
            "src/pkg/dist/io.py": "import tqdm\n",
            "build/lib/pkg/old.py": "import never_seen\n",
            "dist/x.py": "import never_seen_either\n",
        },
    )
    scanned = {u.module for u in scan_project(root).imports}
    assert {"six", "tqdm"} <= scanned and not {"never_seen", "never_seen_either"} & scanned
    by = verdicts(root, make_env(tmp_path, SIX, TQDM))
    assert by["six"].status == "used" and by["six"].used_at.where == "src/pkg/build/steps.py:1"
    assert by["tqdm"].status == "used" and not by["tqdm"].removable


def test_commands_in_nested_build_dirs_are_mentions(tmp_path: Path) -> None:
    root = project(tmp_path, [], {"tools/build/run.sh": "tqdm --help\n", "build/run.sh": "tqdm\n"})
    assert [p.relative_to(root).as_posix() for p in text_files(root)] == ["pyproject.toml", "tools/build/run.sh"]


# --- gap 3: a kept package's Requires-Dist that packaging cannot parse still keeps its target -----


@pytest.mark.parametrize(
    ("line", "name"),
    [("six (>=1.0) ; python_version >=", "six"), ("Six_Thing[x] @@ nonsense", "six-thing"), ("six>=1", "six")],
)
def test_requirement_name_of_bad_lines(line: str, name: str) -> None:
    assert requirement_name(line) == name


def test_unparsable_requires_dist_keeps_the_dependency(tmp_path: Path) -> None:
    root = project(tmp_path, ["host", "six"], {"app.py": "import host\n"})
    env = make_env(tmp_path, dist("host", ["host/__init__.py"], ["six (>=1.0) ; python_version >="]), SIX)
    by = verdicts(root, env)
    assert by["six"].status == "unused"
    assert not by["six"].removable and by["six"].required_by == ["host"]


# --- gap 4: uses that are not import statements -----------------------------------------------


def test_tzdata_is_runtime_loaded(tmp_path: Path) -> None:
    root = project(tmp_path, ["tzdata"], {"app.py": "import zoneinfo\n"})
    by = verdicts(root, make_env(tmp_path, dist("tzdata", ["tzdata/__init__.py", "tzdata/zoneinfo/UTC"])))
    assert by["tzdata"].status == "unknown" and not by["tzdata"].removable and "zoneinfo" in by["tzdata"].reason


def scan(text: str) -> ScanResult:
    result = ScanResult()
    scan_source(text.encode(), "m.py", result)
    return result


def test_package_data_and_locate_calls_are_uses() -> None:
    r = scan(
        "import importlib.resources, pkgutil, pkg_resources, pydoc\n"
        "importlib.resources.files('assets_a').joinpath('x')\n"
        "importlib.resources.read_text('assets_b.sub', 'f.txt')\n"
        "pkgutil.get_data('assets_c', 'x.bin')\n"
        "pkg_resources.resource_filename('assets_d', 'x')\n"
        "pydoc.locate('models_e.layers.Dense')\n"
        "importlib.resources.files(__name__)\n"  # the module itself: neither a use nor dynamic
        "pkgutil.get_data(__package__, 'x')\n"
    )
    got = {u.module: u.kind for u in r.imports}
    assert got["assets_a"] == "resources data" and got["assets_b.sub"] == "resources data"
    assert got["assets_c"] == "pkgutil data" and got["assets_d"] == "pkg_resources data"
    assert got["models_e.layers.Dense"] == "pydoc.locate"
    assert r.dynamic == []
    r = scan("from importlib.resources import files\nfrom pydoc import locate\nfiles('f_pkg')\nlocate(name)\n")
    assert {u.module for u in r.imports} >= {"f_pkg"} and r.dynamic == ["m.py:4"]
    # a function that happens to be called `locate` in a file that never mentions pydoc is not an import
    assert scan("def locate(x):\n    return x\nlocate(name)\n").dynamic == []


def test_data_only_dependency_is_kept(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ["six", "tqdm"],
        {"app.py": "from importlib.resources import files\nTEMPLATES = files('tqdm').joinpath('t')\n"},
    )
    by = verdicts(root, make_env(tmp_path, SIX, TQDM))
    assert by["tqdm"].status == "used" and by["tqdm"].used_at.kind == "resources data"
    assert by["six"].removable


def test_config_target_paths_are_uses(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ["six", "tqdm"],
        {
            "app.py": "import hydra\n",
            "conf/optim.yaml": "optimizer:\n  _target_: tqdm.auto.tqdm\n  lr: 0.1\n",
            "notes.md": "six.moves is mentioned in prose only\n",
        },
    )
    by = verdicts(root, make_env(tmp_path, SIX, TQDM, dist("hydra-core", ["hydra/__init__.py"])))
    assert by["tqdm"].used_at.where == "conf/optim.yaml:2" and by["tqdm"].used_at.kind == "config"
    assert by["six"].removable  # only a Markdown file names it


# --- gap 5: flat projects' own modules -----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "defines_only"),
    [
        ('"""doc"""\nimport os\nX = 1\napp = make_app()\ndef f():\n    run()\nclass C:\n    pass\n', True),
        ("try:\n    import a\nexcept ImportError:\n    a = None\n", True),
        ("def main():\n    pass\nif __name__ == '__main__':\n    main()\n", True),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\n", True),
        ("import train\ntrain.run()\n", False),
        ("for i in range(3):\n    print(i)\n", False),
        ("with open('f') as fh:\n    pass\n", False),
        ("if __name__ == '__main__':\n    main()\nelse:\n    main()\n", False),
        ("def f(:\n", False),
    ],
)
def test_only_defines(source: str, defines_only: bool) -> None:
    assert only_defines(source.encode()) is defines_only


def test_flat_project_modules_are_split_for_the_import_check(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ["six"],
        {
            "app.py": "import six\napi = object()\n",
            "train.py": "import six\nprint('training')\n",
            "setup.py": "from setuptools import setup\nsetup()\n",
            "src/helpers.py": "def h():\n    pass\n",
        },
    )
    assert root_modules(root) == (["app", "helpers"], ["train"])
    report = analyse(root, make_env(tmp_path, SIX))
    assert report.first_party_modules == ["app", "helpers"] and report.unimportable_modules == ["train"]


# --- gap 6: which environment, and never gpuprov's own for --apply unless named ------------------


def test_virtual_env_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = tmp_path / "active"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))
    chosen = (str(venv / "bin" / "python"), "the active virtual environment ($VIRTUAL_ENV)")
    assert choose_interpreter(tmp_path, None) == chosen
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    assert choose_interpreter(tmp_path, None)[1] == "the project's .venv"  # the project's own wins
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path / "gone"))
    with pytest.raises(UsageError, match=r"VIRTUAL_ENV=.*gone: it has no bin/python"):
        choose_interpreter(tmp_path / "elsewhere", None)
    monkeypatch.delenv("VIRTUAL_ENV")
    assert choose_interpreter(tmp_path / "elsewhere", None)[0] is None


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.mark.parametrize("active", [None, sys.prefix])
def test_apply_refuses_gpuprovs_own_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, active: str | None
) -> None:
    if active is None:
        monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    else:
        monkeypatch.setenv("VIRTUAL_ENV", active)
    root = project(tmp_path, ["six"], {"app.py": "import os\n"})
    before = (root / "pyproject.toml").read_bytes()
    code, out, err = run(capsys, "prune", str(root), "--apply")
    assert code == 2 and "gpuprov's own environment" in err and "--python" in err and "Traceback" not in err
    assert (root / "pyproject.toml").read_bytes() == before and out == ""


def test_explicit_python_may_name_gpuprovs_own_environment() -> None:
    env = read_environment(paths=[])
    env.prefix = sys.prefix
    with pytest.raises(UsageError):
        refuse_own_environment(env, explicit=False)
    refuse_own_environment(env, explicit=True)
    env.prefix = "/somewhere/else"
    refuse_own_environment(env, explicit=False)


# --- gap 7: the first use in a file is its lowest line ------------------------------------------


def test_first_use_is_the_lowest_line(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ["six", "tqdm"],
        {
            "app.py": "import six\nimport os\n\nimport six.moves\n",
            "b.py": "import importlib\nimportlib.import_module('tqdm')\ndef f():\n    import tqdm\nimport tqdm\n",
        },
    )
    by = verdicts(root, make_env(tmp_path, SIX, TQDM))
    assert by["six"].used_at.where == "app.py:1"
    assert by["tqdm"].used_at.where == "b.py:2"


# --- gap 8: malformed pyproject values are one clear line, exit 2 --------------------------------

BAD_PYPROJECTS = [
    ('[project]\nname = "x"\ndependencies = "six"\n', "[project] dependencies"),
    ('[project]\nname = "x"\ndependencies = 3\n', "[project] dependencies"),
    ('[project]\nname = "x"\n[project.optional-dependencies]\na = 3\n', "[project.optional-dependencies] a"),
    ('[project]\nname = "x"\noptional-dependencies = ["six"]\n', "[project] optional-dependencies"),
    ('[project]\nname = "x"\n[dependency-groups]\ndev = 3\n', "[dependency-groups] dev"),
    ('dependency-groups = "dev"\n', "[dependency-groups]"),
    ('[project]\nname = "x"\n[tool.uv]\ndev-dependencies = 3\n', "[tool.uv] dev-dependencies"),
    ("[tool]\nuv = 3\n", "[tool] uv"),
    ("[tool]\ngpuprov = 3\n", "[tool] gpuprov"),
    ("project = 3\n", "[project]"),
    ("tool = [1]\n", "[tool]"),
]


@pytest.mark.parametrize(("text", "key"), BAD_PYPROJECTS)
def test_malformed_pyproject_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    code, out, err = run(capsys, "prune", str(tmp_path), "--python", sys.executable)
    assert code == 2 and "Traceback" not in err and out == ""
    assert err.count("\n") == 1 and "pyproject.toml" in err and key in err


def toml_value(value: Any) -> str:
    """A TOML inline value (the shapes the strategy below makes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return repr(value).replace("'", '"') if isinstance(value, str) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + "}"


_scalars = st.one_of(st.integers(-5, 5), st.booleans(), st.sampled_from(["six", "six>=1", "x y", "", "tqdm[a]"]))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "dev"]), inner, max_size=2)
    ),
    max_leaves=6,
)
_keys = st.sampled_from(
    [
        "project.dependencies",
        "project.optional-dependencies",
        "dependency-groups",
        "tool.uv.dev-dependencies",
        "tool.gpuprov",
        "tool.gpuprov.prune",
        "tool.uv",
        "project.name",
        "tool",
    ]
)


def wrong_type(doc: dict[str, Any]) -> bool:
    """Whether a key prune reads has the wrong TOML type (the oracle for the property below)."""

    def tables_of_arrays(v: Any) -> bool:
        return isinstance(v, dict) and all(isinstance(x, list) for x in v.values())

    proj, tool = doc.get("project", {}), doc.get("tool", {})
    if not isinstance(proj, dict) or not isinstance(tool, dict):
        return True
    uv, gpuprov = tool.get("uv", {}), tool.get("gpuprov", {})
    if not isinstance(uv, dict) or not isinstance(gpuprov, dict):
        return True
    prune = gpuprov.get("prune", {})
    return (
        not isinstance(proj.get("dependencies", []), list)
        or not tables_of_arrays(proj.get("optional-dependencies", {}))
        or not tables_of_arrays(doc.get("dependency-groups", {}))
        or not isinstance(uv.get("dev-dependencies", []), list)
        or not isinstance(prune, dict)
        or bool(set(prune) - {"ignore", "exclude"})
    )


def strings_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return set().union(*(strings_in(v) for v in items))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_keys, _values, max_size=3))
def test_property_any_pyproject_shape_is_read_or_refused(tmp_path: Path, shape: dict[str, Any]) -> None:
    doc: dict[str, Any] = {}
    for dotted, value in shape.items():  # nest the dotted keys; a clash keeps the first value
        node = doc
        *parents, last = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node.setdefault(last, value)
    root = Path(os.path.join(tmp_path, f"p{abs(hash(repr(shape)))}"))
    root.mkdir(exist_ok=True)
    (root / "pyproject.toml").write_text("".join(f'"{k}" = {toml_value(v)}\n' for k, v in doc.items()))
    try:
        declared = read_declared(root)
        read_config(declared.pyproject)
    except UsageError as exc:
        assert wrong_type(doc), str(exc)
        assert "pyproject.toml" in str(exc) and "\n" not in str(exc)
        return
    assert not wrong_type(doc)
    written = strings_in(doc)
    for dep in declared.dependencies.values():  # every declaration is a whole string, never one letter of it
        assert all(d.text in written for d in dep.declarations)


# --- gap 10: non-regular files never block the scan --------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_skipped(tmp_path: Path) -> None:
    root = project(tmp_path, ["six"], {"ok.py": "import six\n"})
    os.mkfifo(root / "bad.py")
    os.mkfifo(root / "run.sh")
    os.mkfifo(root / "tool.py")
    done: dict[str, Any] = {}

    def work() -> None:
        done["scan"] = scan_project(root)
        done["text"] = text_files(root)
        done["modules"] = root_modules(root)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(120)  # a guard against a hang, not a speed check: it finishes at once or never
    assert not worker.is_alive(), "the scan blocked opening a FIFO"
    assert done["scan"].files_scanned == 1 and [u.module for u in done["scan"].imports] == ["six"]
    assert [p.name for p in done["text"]] == ["pyproject.toml"]
    assert done["modules"] == (["ok"], [])
