"""The stack's ``prune:`` decision (:func:`provision.stack.prune.prune_decision`): a candidate anything kept
requires stays (and the reason names who), one nothing kept requires goes, one not installed is said so.

Environments are the collector's output shape (:func:`provision.pyenv.collect_distributions`) read by
prune's own reader (:func:`provision.prune.installed.env_from_collected`), with the real ``Requires-Dist``
lines of the packages named (vLLM 0.10.2 and torchvision 0.23.0's METADATA, abridged to the edges used)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.markers import default_environment

from provision.prune.installed import InstalledEnv, env_from_collected
from provision.stack.prune import prune_decision
from provision.stack.spec import StackSpec


def dist(name: str, version: str, requires: list[str] | None = None, extras: list[str] | None = None) -> dict[str, Any]:
    module = name.replace("-", "_")
    return {
        "name": name,
        "version": version,
        "requires": requires or [],
        "provides_extras": extras or [],
        "modules": [module],
        "top_level": [module],
        "has_record": True,
        "record_bytes": 1000,
        "entry_points": {},
    }


def env(*dists: dict[str, Any]) -> InstalledEnv:
    return env_from_collected(
        {
            "interpreter": "/opt/gpuprov/envs/.vllm-0123456789ab/bin/python",
            "prefix": "/opt/gpuprov/envs/.vllm-0123456789ab",
            "python_version": "3.12.3",
            "marker_environment": {**default_environment(), "python_version": "3.12", "sys_platform": "linux"},
            "stdlib_modules": ["os", "sys"],
            "distributions": {d["name"]: d for d in dists},
        }
    )


def spec(requirements: tuple[str, ...], prune: tuple[str, ...], *, build: bool = False) -> StackSpec:
    return StackSpec(
        engine="llama_cpp" if build else "vllm",
        link="/opt/gpuprov/envs/vllm",
        home="/opt/gpuprov/envs/.vllm-0123456789ab",
        python="3.12",
        requirements=requirements,
        constraints=(),
        pins={},
        prune=prune,
        build={"cpu": True} if build else None,
    )


# vllm 0.10.2 Requires-Dist (abridged): torch==2.8.0, torchvision==0.23.0, and more
VLLM = dist(
    "vllm",
    "0.10.2",
    [
        "torch==2.8.0",
        "torchvision==0.23.0",
        "numpy",
        "xformers==0.0.32.post1 ; platform_system == 'Linux' and platform_machine == 'x86_64'",
    ],
)
TORCH = dist("torch", "2.8.0", ["filelock", "sympy>=1.13.3"])
# torchvision 0.23.0 Requires-Dist: numpy, torch==2.8.0, pillow!=8.3.*,>=5.3.0
TORCHVISION = dist("torchvision", "0.23.0", ["numpy", "torch==2.8.0", "pillow!=8.3.*,>=5.3.0"])
PILLOW = dist("pillow", "11.3.0")
NUMPY = dist("numpy", "2.2.6")
FILELOCK = dist("filelock", "3.19.1")
SYMPY = dist("sympy", "1.14.0")
XFORMERS = dist("xformers", "0.0.32.post1", ["numpy", "torch==2.8.0"])
BASE = (TORCH, TORCHVISION, PILLOW, NUMPY, FILELOCK, SYMPY)


def test_required_by_the_engine_is_kept_and_says_who() -> None:
    removable, kept = prune_decision(spec(("vllm",), ("torchvision",)), env(VLLM, XFORMERS, *BASE))
    assert removable == []
    assert kept == {"torchvision": "required by vllm 0.10.2"}


def test_nothing_requires_it_removable() -> None:
    removable, kept = prune_decision(spec(("torch",), ("torchvision",)), env(*BASE))
    assert removable == ["torchvision"]
    assert kept == {}


def test_not_installed_is_said() -> None:
    removable, kept = prune_decision(spec(("torch",), ("torchvision", "torchaudio")), env(*BASE))
    assert removable == ["torchvision"]
    assert kept == {"torchaudio": "not installed"}


def test_required_only_by_another_candidate_both_removable() -> None:
    # pillow: torchvision requires it, nothing else kept does
    removable, kept = prune_decision(spec(("torch",), ("torchvision", "pillow")), env(*BASE))
    assert sorted(removable) == ["pillow", "torchvision"]
    assert kept == {}


def test_candidate_a_kept_candidate_requires_stays() -> None:
    # vllm keeps torchvision, and torchvision needs pillow: removing pillow would break the torchvision kept
    removable, kept = prune_decision(spec(("vllm",), ("torchvision", "pillow")), env(VLLM, XFORMERS, *BASE))
    assert removable == []
    assert kept == {"torchvision": "required by vllm 0.10.2", "pillow": "required by torchvision 0.23.0"}


def test_required_by_something_else_kept_stays_though_a_candidate_also_requires_it() -> None:
    # numpy: torchvision (a candidate) requires it, and so does vllm (kept)
    removable, kept = prune_decision(spec(("vllm",), ("numpy",)), env(VLLM, XFORMERS, *BASE))
    assert removable == []
    assert kept["numpy"].startswith("required by ") and "vllm 0.10.2" in kept["numpy"]


def test_markers_false_here_do_not_keep() -> None:
    app = dist("app", "1", ["winonly ; sys_platform == 'win32'", "gpuextra ; extra == 'gpu'"], ["gpu"])
    e = env(app, dist("winonly", "1"), dist("gpuextra", "1"))
    removable, kept = prune_decision(spec(("app",), ("winonly", "gpuextra")), e)
    assert sorted(removable) == ["gpuextra", "winonly"]
    # the extra asked for in the requirements keeps what it requires
    removable, kept = prune_decision(spec(("app[gpu]",), ("winonly", "gpuextra")), e)
    assert removable == ["winonly"] and kept == {"gpuextra": "required by app 1"}


def test_llama_cpp_build_keeps_what_its_server_extra_requires() -> None:
    # a llama.cpp spec's requirements omit llama-cpp-python (it is built): its [server] extra is a root
    llama = dist(
        "llama-cpp-python",
        "0.3.16",
        ["typing-extensions>=4.5.0", "numpy>=1.20.0", "uvicorn>=0.22.0 ; extra == 'server'"],
        ["server"],
    )
    e = env(llama, dist("typing-extensions", "4.15.0"), NUMPY, dist("uvicorn", "0.35.0"))
    removable, kept = prune_decision(spec((), ("uvicorn", "numpy"), build=True), e)
    assert removable == []
    assert kept == {"uvicorn": "required by llama-cpp-python 0.3.16", "numpy": "required by llama-cpp-python 0.3.16"}
    # without the build, nothing asked for needs them
    removable, kept = prune_decision(spec((), ("uvicorn", "numpy")), e)
    assert sorted(removable) == ["numpy", "uvicorn"] and kept == {}


# --- property: on random dependency graphs, the decision matches a plain reachability oracle ---------

NAMES = [f"p{i}" for i in range(8)]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[dict[str, list[str]], list[str], list[str]]:
    edges = {n: draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True)) for n in NAMES}
    roots = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    candidates = draw(st.lists(st.sampled_from([*NAMES, "absent"]), min_size=1, max_size=4, unique=True))
    return edges, roots, candidates


def reachable(edges: dict[str, list[str]], start: set[str]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        for nxt in edges.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_decision_is_the_largest_safe_removal(case: tuple[dict[str, list[str]], list[str], list[str]]) -> None:
    edges, roots, candidates = case
    e = env(*(dist(n, "1", edges[n]) for n in NAMES))
    removable, kept = prune_decision(spec(tuple(roots), tuple(candidates)), e)
    assert set(removable) | set(kept) == set(candidates) and not set(removable) & set(kept)
    assert kept.get("absent", "not installed") == "not installed"
    # oracle: what stays (everything installed but the removed) must be closed under requirements,
    # the roots that are not candidates stay, and the removal is the largest such set: a candidate is
    # removed exactly when no kept distribution reached from the non-candidate roots needs it
    stays = reachable(edges, set(roots) - set(candidates))
    must_keep = {c for c in candidates if c in stays}
    assert set(removable) == {c for c in candidates if c in NAMES} - must_keep
    for name in stays - set(removable):
        assert not set(edges[name]) & set(removable), (
            f"{name} stays and needs removed {set(edges[name]) & set(removable)}"
        )
