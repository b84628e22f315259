"""Issue 18's prune evidence rules: module paths in string literals (Django settings, ``dictConfig``,
Sphinx extensions) are uses, a plain word is weak evidence that keeps the package, prose in Markdown
is weak evidence, ``[build-system]`` is not a runtime use, plugins are recognised by their entry point
group, reasons with square brackets survive the table, and the pyproject edit leaves no dangling comma."""

from __future__ import annotations

import importlib.util
import io
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from provision.prune.analysis import analyse
from provision.prune.installed import InstalledEnv, read_environment
from provision.prune.removal import remove_from_pyproject
from provision.prune.report import render_prune

DATA = Path(__file__).resolve().parents[1] / "data" / "prune"
_spec = importlib.util.spec_from_file_location("prune_sitebuild_evidence", DATA / "sitebuild.py")
assert _spec is not None and _spec.loader is not None
sitebuild = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sitebuild)


def dist(name: str, files: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "version": "1.0", "files": files, "requires": [], **extra}


def make_env(tmp_path: Path, *dists: dict[str, Any]) -> InstalledEnv:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for d in dists:
        sitebuild.write_dist(site, d)
    return read_environment(paths=[str(site)])


def project(tmp_path: Path, deps: list[str], files: dict[str, str], extra_toml: str = "") -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    quoted = ", ".join(f'"{d}"' for d in deps)
    (root / "pyproject.toml").write_text(
        f'{extra_toml}[project]\nname = "proj"\nversion = "0"\ndependencies = [{quoted}]\n'
    )
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def verdicts(root: Path, env: InstalledEnv) -> dict[str, Any]:
    return {v.key: v for v in analyse(root, env).verdicts}


DJANGO_SETTINGS = """\
INSTALLED_APPS = [
    "django.contrib.admin",
    "whitenoise.runserver_nostatic",
]
MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware"]
LOGGING = {
    "version": 1,
    "formatters": {"json": {"()": "pythonjsonlogger.jsonlogger.JsonFormatter"}},
    "handlers": {"out": {"class": "rich.logging.RichHandler"}},
}
"""


def test_django_and_dictconfig_module_paths_are_uses(tmp_path: Path) -> None:
    deps = ["django", "whitenoise", "django-cors-headers", "python-json-logger", "rich", "six"]
    root = project(tmp_path, deps, {"mysite/settings.py": DJANGO_SETTINGS, "mysite/__init__.py": ""})
    env = make_env(
        tmp_path,
        dist("Django", ["django/__init__.py", "django/contrib/admin/__init__.py"]),
        dist("whitenoise", ["whitenoise/__init__.py", "whitenoise/runserver_nostatic/__init__.py"]),
        dist("django-cors-headers", ["corsheaders/__init__.py", "corsheaders/middleware.py"]),
        dist("python-json-logger", ["pythonjsonlogger/__init__.py", "pythonjsonlogger/jsonlogger.py"]),
        dist("rich", ["rich/__init__.py", "rich/logging.py"]),
        dist("six", ["six.py"]),
    )
    by = verdicts(root, env)
    expected = {
        "django": "mysite/settings.py:2",
        "whitenoise": "mysite/settings.py:3",
        "django-cors-headers": "mysite/settings.py:5",
        "python-json-logger": "mysite/settings.py:8",
        "rich": "mysite/settings.py:9",
    }
    for key, where in expected.items():
        assert by[key].status == "used", key
        assert by[key].used_at.where == where and by[key].used_at.kind == "dotted module path in a string"
    assert by["six"].removable  # named nowhere


def test_plain_word_is_weak_evidence_and_keeps_the_package(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ["sphinx-copybutton", "pyyaml", "six"],
        {"docs/conf.py": 'extensions = ["sphinx_copybutton"]\n', "app.py": 'FORMAT = "yaml"\nNAME = "six-ish"\n'},
    )
    env = make_env(
        tmp_path,
        dist("sphinx-copybutton", ["sphinx_copybutton/__init__.py"]),
        dist("PyYAML", ["yaml/__init__.py"]),
        dist("six", ["six.py"]),
    )
    by = verdicts(root, env)
    for key, word, where in (
        ("sphinx-copybutton", "sphinx_copybutton", "docs/conf.py:1"),
        ("pyyaml", "yaml", "app.py:1"),
    ):
        assert by[key].status == "unknown" and not by[key].removable
        assert "weak evidence" in by[key].reason and f"'{word}' at {where}" in by[key].reason
    assert by["six"].removable  # "six-ish" is not a module name


def test_markdown_prose_is_weak_evidence(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ["uvicorn", "tqdm"],
        {"README.md": "Run it with:\n\n    uvicorn app:api\n", "Procfile": "worker: tqdm --help\n"},
    )
    env = make_env(
        tmp_path,
        dist("uvicorn", ["uvicorn/__init__.py"], entry_points={"console_scripts": ["uvicorn = uvicorn.main:main"]}),
        dist("tqdm", ["tqdm/__init__.py"], entry_points={"console_scripts": ["tqdm = tqdm.cli:main"]}),
    )
    by = verdicts(root, env)
    assert by["uvicorn"].status == "unknown" and not by["uvicorn"].removable
    assert by["uvicorn"].used_at.where == "README.md:3"
    assert by["uvicorn"].used_at.kind == "command (in prose: weak evidence)"
    assert by["tqdm"].status == "used" and by["tqdm"].used_at.kind == "command"  # a Procfile runs it


def test_build_backend_is_not_a_runtime_use(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        ["setuptools", "six"],
        {"app.py": "import six\n"},
        extra_toml='[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n',
    )
    env = make_env(
        tmp_path, dist("setuptools", ["setuptools/__init__.py", "setuptools/build_meta.py"]), dist("six", ["six.py"])
    )
    by = verdicts(root, env)
    assert by["setuptools"].status == "unused" and by["setuptools"].removable


def test_plugins_are_judged_by_their_entry_point_group(tmp_path: Path) -> None:
    mock = dist(
        "requests-mock",
        ["requests_mock/__init__.py"],
        entry_points={"pytest11": ["requests_mock = requests_mock.contrib._pytest_plugin"]},
    )
    anyio = dist("anyio", ["anyio/__init__.py"], entry_points={"pytest11": ["anyio = anyio.pytest_plugin"]})
    pytest_dist = dist(
        "pytest", ["pytest/__init__.py"], entry_points={"console_scripts": ["pytest = pytest:console_main"]}
    )
    root = project(tmp_path, ["requests-mock", "anyio", "pytest"], {"tests/test_x.py": "import pytest\n"})
    by = verdicts(root, make_env(tmp_path, mock, anyio, pytest_dist))
    for key in ("requests-mock", "anyio"):
        assert by[key].status == "used" and by[key].used_at.kind == "plugin loaded by pytest"

    # without pytest installed nothing loads the plugin: it is an ordinary unused dependency
    other = tmp_path / "other"
    other.mkdir()
    root = project(other, ["requests-mock"], {"app.py": "import os\n"})
    by = verdicts(root, make_env(other, mock))
    assert by["requests-mock"].status == "unused" and by["requests-mock"].removable


def test_reasons_with_brackets_survive_the_table(tmp_path: Path) -> None:
    sqla = dist(
        "SQLAlchemy",
        ["sqlalchemy/__init__.py"],
        requires=["psycopg2; extra == 'postgresql'"],
        provides_extras=["postgresql"],
    )
    root = project(tmp_path, ["sqlalchemy", "psycopg2"], {"app.py": "import sqlalchemy\n"})
    report = analyse(root, make_env(tmp_path, sqla, dist("psycopg2", ["psycopg2/__init__.py"])))
    buf = io.StringIO()
    render_prune(report.to_dict(), Console(file=buf, width=400, color_system=None))
    assert "optional backend of SQLAlchemy[postgresql]" in buf.getvalue()


def test_pyproject_edit_leaves_no_dangling_comma() -> None:
    assert (
        remove_from_pyproject('dependencies = ["django>=4.2", "six"]\n', ["six"]) == 'dependencies = ["django>=4.2"]\n'
    )
    assert (
        remove_from_pyproject('dependencies = ["six", "django>=4.2"]\n', ["six"]) == 'dependencies = ["django>=4.2"]\n'
    )
    assert remove_from_pyproject('dependencies = ["six"]\n', ["six"]) == "dependencies = []\n"


_REQ = st.from_regex(r"[a-z][a-z0-9]{0,6}(>=[0-9]\.[0-9])?", fullmatch=True)


@given(
    items=st.lists(_REQ, min_size=1, max_size=6, unique=True),
    data=st.data(),
    multiline=st.booleans(),
    trailing=st.booleans(),
)
def test_property_removal_keeps_the_rest_and_stays_tidy(
    items: list[str], data: st.DataObject, multiline: bool, trailing: bool
) -> None:
    gone = data.draw(st.lists(st.sampled_from(items), unique=True))
    if multiline:
        body = "".join(f'  "{i}",\n' for i in items)
        body = body if trailing else body[:-2] + "\n"
        text = f"[project]\ndependencies = [\n{body}]\n"
    else:
        text = "[project]\ndependencies = [" + ", ".join(f'"{i}"' for i in items) + (", " if trailing else "") + "]\n"
    out = remove_from_pyproject(text, gone)
    assert tomllib.loads(out)["project"]["dependencies"] == [i for i in items if i not in gone]
    assert "[, " not in out and ",," not in out.replace(" ", "")
    if ", ]" not in text:  # no comma left dangling before the bracket that was not there
        assert ", ]" not in out
