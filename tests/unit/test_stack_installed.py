"""What an environment holds, read from its metadata without running it (provision.stack.installed): the
same versions and the same dependency graph as prune's full collector, which runs inside the interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from provision.prune.graph import DependencyGraph
from provision.prune.installed import read_environment
from provision.stack.installed import dependency_env, installed_versions, missing_pins

#: the environment the tests run in: a real one, made by uv from uv.lock
ENV = Path(sys.prefix)


@pytest.fixture(scope="module")
def both():
    return dependency_env(ENV), read_environment(sys.executable)


def test_versions_and_requirements_match_the_collector_that_runs_inside_the_interpreter(both):
    light, full = both
    assert set(light.dists) == set(full.dists) and len(light.dists) > 30
    for key, dist in full.dists.items():
        assert light.dists[key].version == dist.version, key
        assert sorted(light.dists[key].requires) == sorted(dist.requires), key
        assert sorted(light.dists[key].provides_extras) == sorted(dist.provides_extras), key
    assert installed_versions(ENV) == {k: d.version for k, d in full.dists.items()}
    for name in ("python_version", "python_full_version", "sys_platform", "platform_machine"):
        assert light.marker_environment[name] == full.marker_environment[name], name


@pytest.mark.parametrize(
    "roots",
    [{"ansible-lint": set(), "molecule": set()}, {"hypothesis": set()}, {"matplotlib": set()}, {"typer": set()}],
)
def test_the_dependency_closure_is_the_same(both, roots):
    light, full = both
    a, b = DependencyGraph(light).closure(roots), DependencyGraph(full).closure(roots)
    assert a.reached == b.reached
    assert {k: sorted(e.source for e in v) for k, v in a.required_by.items()} == {
        k: sorted(e.source for e in v) for k, v in b.required_by.items()
    }


def test_missing_pins_ignore_a_local_label_and_name_the_version_there():
    have = {"torch": "2.10.0+cu128", "vllm": "0.19.0"}
    assert missing_pins(have, {"torch": "2.10.0", "vllm": "0.19.1", "flashinfer-python": "0.6.6"}) == {
        "vllm": "0.19.0",
        "flashinfer-python": None,
    }


def test_no_environment_is_an_empty_one(tmp_path):
    assert installed_versions(tmp_path / "nothing") == {}
    assert dependency_env(tmp_path / "nothing").dists == {}
