"""The sets `gpuprov compat plan` gives an engine's environment resolve with the real uv against the real index
(issue 16's outside oracle): for each GPU/driver case, `uv pip compile` of the plan's "install" list with its
pins as constraints (-c, from --format constraints) and its index when a pin names one, for CPython 3.12 on
glibc 2.35 with wheels only (what a host installs). The resolution must hold every pin exactly as the plan
chose it, and exactly one torch, from the pin's index (PyPI when it names none): a second torch from another
index is how a CUDA build and a CPU build end up mixed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.integration.test_compat_uv_compile import MATRIX, UV_TARGET, _uv

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

DATA = Path(__file__).parent.parent / "data"
PYPI = "https://pypi.org/simple"

#: (case, `compat plan` arguments). The driver of the first and third is a what-if on a recorded machine.
CASES = {
    # seed 003's laptop (its snapshot has 560.35.03) on a 570 driver: CUDA 13 builds do not run there
    "rtx4090-laptop-570": ["--from", str(DATA / "snapshots/rtx4090-laptop.constructed.json"), "--driver", "570.124.06"],
    # a reading taken on gpuprov's own device machine (driver 580.159.04, CUDA 13.0): the newest set
    "h100-580": ["--from", str(DATA / "readings/h100-580-device.q.txt")],
    # Turing (cc 7.5, telegraf's dual RTX 2080 reading) on Ubuntu 22.04's 535 driver: vLLM's newest does not fit
    "rtx2080-535": ["--from", str(DATA / "readings/rtx2080x2-590.qx.xml"), "--driver", "535.230.02"],
}


def compat_plan(args: list[str], engine: str = "vllm") -> tuple[dict, str]:
    """`gpuprov compat plan` for ``args``: its JSON and its constraints file (--format constraints)."""
    base = [sys.executable, "-m", "provision", "compat", "plan", "--engine", engine, *args]
    as_json = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=120)
    assert as_json.returncode == 0, as_json.stderr
    constraints = subprocess.run([*base, "--format", "constraints"], capture_output=True, text=True, timeout=120)
    assert constraints.returncode == 0, constraints.stderr
    return json.loads(as_json.stdout), constraints.stdout


def compiled_set(text: str) -> dict[str, list[tuple[str, str]]]:
    """``uv pip compile --emit-index-annotation`` output -> {name: [(version, index), ...]} (a list, so that a
    package resolved twice shows as two entries). A ``name @ URL`` line is kept with the URL as its version."""
    out: dict[str, list[tuple[str, str]]] = {}
    current: str | None = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            name, sep, version = line.partition("==")
            if not sep:
                name, _, version = line.partition(" @ ")
            current = canonicalize_name(name.split("[")[0].strip())
            out.setdefault(current, []).append((version.split(";")[0].strip(), ""))
        elif current is not None and line.strip().startswith("# from "):
            version, _ = out[current][-1]
            out[current][-1] = (version, line.strip().removeprefix("# from ").strip())
    return out


def assert_plan_resolved(plan: dict, resolved: dict[str, list[tuple[str, str]]], context: str = "") -> None:
    """Every pin resolved exactly as planned (from its index, PyPI when none), and one torch only."""
    for pin in plan["pins"]:
        got = resolved.get(canonicalize_name(pin["name"]), [])
        assert [v for v, _ in got] == [pin["version"]], (pin, got, context)
        if got[0][1]:  # an index annotation (the wheelhouse's requirements.txt has none)
            assert got[0][1].rstrip("/") == (pin["index"] or PYPI).rstrip("/"), (pin, got, context)
    assert len(resolved.get("torch", [])) == 1, (resolved.get("torch"), context)


def uv_compile(plan: dict, constraints: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    requirements = workdir / "requirements.in"
    requirements.write_text("\n".join(plan["install"]) + "\n", encoding="utf-8")
    (workdir / "constraints.txt").write_text(constraints, encoding="utf-8")
    indexes = sorted({p["index"] for p in plan["pins"] if p["index"]})
    cmd = [*_uv(), "pip", "compile", str(requirements), "-c", str(workdir / "constraints.txt"), *UV_TARGET]
    cmd += ["--only-binary", ":all:", "--no-header", "--quiet", "--emit-index-annotation", "--index-url", PYPI]
    for url in indexes:
        cmd += ["--extra-index-url", url]
    if indexes:
        # what the plan's constraints tell the user (Plan.constraints): the pinned build from its index
        cmd += ["--index-strategy", "unsafe-best-match"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=540)


def test_planned_sets_resolve_on_the_real_index(tmp_path: Path) -> None:
    """CI cost: the plans (~0.5 s each), then one uv resolution against PyPI per distinct set, at once (two sets
    today: ~10-20 s with uv's cache; the laptop on 570 and the Turing card on 535 get the same set)."""
    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        plans = dict(zip(CASES, pool.map(compat_plan, CASES.values()), strict=True))

    def key(case: str) -> str:  # what uv sees: the install list and the pins (the comment lines aside)
        plan = plans[case][0]
        return json.dumps([plan["install"], [(p["name"], p["version"], p["index"]) for p in plan["pins"]]])

    distinct = {key(case): case for case in CASES}
    for case in distinct.values():
        (tmp_path / case).mkdir()
    with ThreadPoolExecutor(max_workers=len(distinct)) as pool:  # network-bound
        resolved = pool.map(lambda c: uv_compile(*plans[c], tmp_path / c), distinct.values())
        procs = dict(zip(distinct, resolved, strict=True))
    for case in CASES:
        plan, proc = plans[case][0], procs[key(case)]
        assert proc.returncode == 0, (case, plan["pins"], proc.stderr[-3000:])
        assert_plan_resolved(plan, compiled_set(proc.stdout), f"{case}: {proc.stdout[-3000:]}")
        print(f"{case}: " + ", ".join(f"{p['name']}=={p['version']}" for p in plan["pins"]))

    # the cases are what they say: the H100 on 580 gets the newest installable vLLM, the Turing card on 535 an
    # older one (CUDA 13 wheels need driver >= 580), and so does the laptop on 570
    from provision.compat.matrix import Matrix

    matrix = Matrix(tomllib.loads(MATRIX.read_text(encoding="utf-8")))
    newest = max((Version(v) for v in matrix.vllm_releases), default=None)
    vllm = {case: Version(next(p["version"] for p in plans[case][0]["pins"] if p["name"] == "vllm")) for case in CASES}
    assert newest is not None and vllm["rtx2080-535"] < vllm["h100-580"] <= newest, vllm
    assert vllm["rtx4090-laptop-570"] < vllm["h100-580"], vllm


def test_a_second_torch_would_be_seen() -> None:
    """The one-torch check reads two torch lines (a CUDA build from one index, a CPU build from another) as two,
    and a torch from another index than the pin's as wrong."""
    plan = {"pins": [{"name": "torch", "version": "2.10.0", "index": None}], "install": ["torch"]}
    one = "torch==2.10.0\n    # via -r requirements.in\n    # from https://pypi.org/simple\n"
    assert_plan_resolved(plan, compiled_set(one))
    two = one + "torch==2.10.0+cpu\n    # from https://download.pytorch.org/whl/cpu\n"
    with pytest.raises(AssertionError):
        assert_plan_resolved(plan, compiled_set(two))
    elsewhere = "torch==2.10.0\n    # from https://download.pytorch.org/whl/cu128\n"
    with pytest.raises(AssertionError):
        assert_plan_resolved(plan, compiled_set(elsewhere))
