"""The `llama_cpp:` profile section, and knowing when the installed build is already what a plan asks."""

from __future__ import annotations

import contextlib
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision import llama_build as lb
from provision.llama_build import section as lb_section
from provision.profiles import ProfileError
from provision.profiles.loader import ProfileSet, builtin_dir
from tests.conftest import load_snapshot

BASE = "description: test\nmatch: {gpu_names: ['*']}\n"


def load(tmp_path, body: str):
    d = tmp_path / "user"
    d.mkdir(exist_ok=True)
    (d / "mine.yaml").write_text(BASE + body)
    return ProfileSet([builtin_dir(), d]).load("mine")


def test_section_parses_and_plans_like_the_cli(tmp_path):
    p = load(tmp_path, "llama_cpp:\n  build: true\n  python: /opt/llama/.venv/bin/python\n  version: '0.3.36'\n")
    section = p.sections["llama_cpp"]
    assert section == lb.LlamaCppSection(True, "/opt/llama/.venv/bin/python", "0.3.36", None, False, None, None)
    snap = load_snapshot("rtx4090-laptop")
    plan = lb.plan_from_section(snap, section, lb.gather_for_section(snap, section), mem_available=16000)
    direct = lb.plan_build(
        load_snapshot("rtx4090-laptop"), python="/opt/llama/.venv/bin/python", version="0.3.36", mem_available=16000
    )
    assert plan == direct
    assert plan.archs == ["89"] and plan.spec == "llama-cpp-python==0.3.36"


def test_section_without_python_builds_into_the_interpreter_gpuprov_runs_with(tmp_path, monkeypatch):
    """The issue's example `llama_cpp: {build: true, version: ..., arch: auto}`: no `python:` needed."""
    monkeypatch.setattr(sys, "executable", "/opt/gpuprov/.venv/bin/python")
    p = load(tmp_path, "llama_cpp: {build: true, version: '0.3.36', arch: auto}\n")
    section = p.sections["llama_cpp"]
    assert section.python is None and section.archs is None
    snap = load_snapshot("rtx4090-laptop")
    plan = lb.plan_from_section(snap, section, lb.gather_for_section(snap, section), mem_available=16000)
    assert plan.python == "/opt/gpuprov/.venv/bin/python"
    assert "--python /opt/gpuprov/.venv/bin/python" in plan.shell()
    assert lb.profile_build_python(p) == "/opt/gpuprov/.venv/bin/python"  # where apply looks for the installed build
    assert lb_section._section_dict(section) == {"build": True, "version": "0.3.36", "arch": "auto"}


def test_a_profile_that_builds_nothing_names_no_interpreter(tmp_path):
    assert lb.profile_build_python(load(tmp_path, "llama_cpp: {build: false}\n")) is None
    assert lb.profile_build_python(load(tmp_path, "")) is None


def test_explicit_archs_and_round_trip(tmp_path):
    p = load(tmp_path, "llama_cpp: {build: true, python: /opt/x/bin/python, arch: [89, '8.6']}\n")
    s = p.sections["llama_cpp"]
    assert s.archs == ("86", "89")
    assert lb_section._section_dict(s) == {"build": True, "python": "/opt/x/bin/python", "arch": ["86", "89"]}


@pytest.mark.parametrize(
    "body, message",
    [
        ("llama_cpp: {build: true, python: bin/python}\n", "absolute path"),
        ("llama_cpp: {build: true, python: /p, version: latest}\n", "a version like"),
        ("llama_cpp: {build: true, python: /p, arch: [99]}\n", "CUDA architectures"),
        ("llama_cpp: {build: true, python: /p, cpu: true, arch: [89]}\n", "do not go together"),
        ("llama_cpp: {build: yes please, python: /p}\n", "llama_cpp.build"),
        ("llama_cpp: {build: true, python: /p, flavour: cuda}\n", "flavour"),
    ],
)
def test_bad_sections_name_the_file_and_key(tmp_path, body, message):
    with pytest.raises(ProfileError, match=message) as exc:
        load(tmp_path, body)
    assert "mine.yaml" in str(exc.value)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["build", "python", "version", "arch", "cpu", "source", "x"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=10)
        | st.lists(st.integers(min_value=0, max_value=200), max_size=3),
        max_size=5,
    )
)
def test_any_section_value_is_a_profile_or_a_profile_error(tmp_path_factory, data):
    import yaml

    tmp = tmp_path_factory.mktemp("p")
    with contextlib.suppress(ProfileError):
        load(tmp, yaml.safe_dump({"llama_cpp": data}))


def _plan(**kw):
    kw.setdefault("python", "/p/bin/python")
    return lb.plan_build(load_snapshot("rtx4090-laptop"), environ={}, **kw)


R = {"recorded": True, "version": None, "cpu": False}


@pytest.mark.parametrize(
    "installed, plan_kw, same, reason",
    [
        (None, {}, False, "not installed"),
        ({"recorded": False}, {}, False, "not built by gpuprov"),
        (
            {"recorded": True, "version": "0.3.16", "cpu": False, "archs": ["89"]},
            {"version": "0.3.36"},
            False,
            "version 0.3.16 installed, 0.3.36 asked",
        ),
        ({**R, "cpu": True, "archs": []}, {}, False, "a CPU build is installed"),
        ({**R, "archs": ["86"]}, {}, False, "built for sm_86, needed sm_89"),
        ({**R, "archs": ["89"]}, {}, True, "already built"),
        ({**R, "version": "0.3.36", "archs": ["89"]}, {"version": "0.3.36"}, True, "already"),
    ],
)
def test_build_matches(installed, plan_kw, same, reason):
    ok, why = lb.build_matches(installed, _plan(**plan_kw))
    assert ok is same
    assert reason in why


def test_installed_build_reads_the_marker(tmp_path):
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    python = str(tmp_path / "v/bin/python")
    assert lb.installed_build(python) is None
    site = next((tmp_path / "v/lib").glob("python3*/site-packages"))
    (site / "llama_cpp/lib").mkdir(parents=True)
    (site / "llama_cpp/__init__.py").write_text("raise RuntimeError('not imported')\n")
    assert lb.installed_build(python) == {"recorded": False}
    plan = lb.plan_build(load_snapshot("h100"), python=python, environ={})
    lb.record_build(plan, lb.BuildResult(True, 0, 42.0, "/tmp/log"))
    got = lb.installed_build(python)
    assert got["recorded"] and got["archs"] == ["90"] and got["duration_s"] == 42.0
    assert lb.build_matches(got, plan) == (True, "already built as asked")
