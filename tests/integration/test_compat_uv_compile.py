"""The vLLM + flashinfer plan for the RTX 4090 Laptop of seed 003 resolves with the real uv against PyPI.

The target host (tests/data/snapshots/rtx4090-laptop.constructed.json) has driver 560.35.03 (CUDA
12.6): CUDA 13 builds (vLLM ≥ 0.20, torch ≥ 2.11 from PyPI) cannot run there, so the plan is vLLM
0.19.1 + torch 2.10.0 (the plain PyPI wheel, CUDA 12.8, which runs on 560 through minor-version
compatibility) + flashinfer-python 0.6.6. Every pin is on PyPI, so no PyTorch index is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

from provision.compat.plan import plan
from provision.compat.target import target_from_snapshot
from provision.snapshot import Snapshot

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

SNAPSHOT = Path(__file__).parent.parent / "data" / "snapshots" / "rtx4090-laptop.constructed.json"
MATRIX = Path(__file__).parents[2] / "provision" / "data" / "compat.toml"


def _uv() -> list[str]:
    if shutil.which("uv"):
        return ["uv"]
    return [sys.executable, "-m", "uv"]


def test_rtx4090_laptop_vllm_flashinfer_plan_resolves(tmp_path: Path) -> None:
    result = plan(target_from_snapshot(Snapshot.load(SNAPSHOT)), "vllm", flashinfer=True)
    assert result.report is not None and result.report.verdict == "ok"
    assert all(p.index is None for p in result.pins), "this plan must be installable from PyPI alone"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(result.constraints(), encoding="utf-8")
    requirements = tmp_path / "requirements.in"
    requirements.write_text("vllm[flashinfer]\ntorch\nflashinfer-python\n", encoding="utf-8")
    proc = subprocess.run(
        [
            *_uv(),
            "pip",
            "compile",
            str(requirements),
            "-c",
            str(constraints),
            "--python-version",
            "3.12",
            # glibc 2.35 (Ubuntu 22.04, Debian 12 has 2.36): vLLM 0.19.1 ships manylinux_2_31 wheels only,
            # and --only-binary makes the resolution use the wheels a host installs, not sdist metadata
            "--python-platform",
            "x86_64-manylinux_2_35",
            "--only-binary",
            ":all:",
            "--no-header",
            "--quiet",
            "--index-url",
            "https://pypi.org/simple",
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resolved = {
        line.split("==")[0]: line.split("==")[1].split()[0]
        for line in proc.stdout.splitlines()
        if "==" in line and not line.startswith(("#", " "))
    }
    for pin in result.pins:
        assert resolved.get(pin.name) == pin.version, (pin, proc.stdout[-2000:])


# -- the oracle: uv's resolver on the packages' own metadata against compat check's verdict -------------------

#: uv's view of "this pair installs together": Linux x86_64, glibc 2.35, CPython 3.12. Sdists are allowed: some
#: releases are published only so (flashinfer-python 0.3.1, vLLM 0.6.0's pyairports) and uv reads their static
#: metadata; --only-binary would fail those pairs for a reason that is not the pair
UV_TARGET = ["--python-platform", "x86_64-manylinux_2_35", "--python-version", "3.12"]


def _sample(items: list[str], n: int) -> list[str]:
    """``n`` items spread evenly over ``items``, first and last included."""
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def oracle_cases() -> list[tuple[str, ...]]:
    """Pairs across the whole matrix: each sampled vLLM / xformers row with the torch it pins (must install) and
    with another torch (must not), and the extras cases of issue 18."""
    from provision.compat.matrix import Matrix

    m = Matrix(tomllib.loads(MATRIX.read_text(encoding="utf-8")))
    vllm = sorted(m.vllm_releases, key=Version)
    cases: list[tuple[str, ...]] = []
    for version in _sample(vllm, 7):
        # the other torch: the nearest newer release's (the older one's for the newest), the likeliest mix-up
        torch = m.vllm_releases[version].torch
        later = [m.vllm_releases[v].torch for v in vllm[vllm.index(version) :] if m.vllm_releases[v].torch != torch]
        earlier = [
            m.vllm_releases[v].torch for v in reversed(vllm[: vllm.index(version)]) if m.vllm_releases[v].torch != torch
        ]
        other = (later or earlier)[0]
        cases += [(f"vllm=={version}", f"torch=={torch}"), (f"vllm=={version}", f"torch=={other}")]
    pinned = sorted(
        (v for v, r in m.xformers_releases.items() if str(r.torch).removeprefix("==") in m.torch_versions), key=Version
    )
    for version in _sample(pinned, 3):
        torch = str(m.xformers_releases[version].torch).removeprefix("==")
        i = m.torch_versions.index(torch)
        other = m.torch_versions[i - 1 if i else i + 1]  # the torch release before (after, for the oldest)
        cases += [(f"xformers=={version}", f"torch=={torch}"), (f"xformers=={version}", f"torch=={other}")]
    cases += [
        ("flashinfer-python==0.7.4", "torch==2.7.1"),  # torch>=2.8 only under [sm107]
        ("flashinfer-python[sm107]==0.7.4", "torch==2.7.1"),
        ("flashinfer-python[b12x]==0.7.4", "torch==2.11.0"),  # torch>=2.12.0 under [b12x]
        ("vllm==0.10.2", "flashinfer-python==0.3.1"),  # vLLM pins 0.3.0 only under [flashinfer]
        ("vllm[flashinfer]==0.10.2", "flashinfer-python==0.3.1"),
    ]
    return cases


def _verdict(pair: tuple[str, ...]) -> str:
    from provision.compat.target import Target, apply_overrides
    from provision.compat.verdict import check

    return check(apply_overrides(Target(), packages=list(pair))).verdict


def _uv_resolves(pair: tuple[str, ...], workdir: Path) -> tuple[bool, str]:
    requirements = workdir / ("-".join(pair).replace("[", "_").replace("]", "_").replace("=", "") + ".in")
    requirements.write_text("\n".join(pair) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [
            *_uv(),
            "pip",
            "compile",
            str(requirements),
            *UV_TARGET,
            "--no-header",
            "--quiet",
            "--index-url",
            "https://pypi.org/simple",
        ],
        capture_output=True,
        text=True,
        timeout=540,
    )
    last = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    return proc.returncode == 0, " ".join(last[-3:])[-400:]


def test_verdicts_agree_with_uv_pip_compile(tmp_path: Path) -> None:
    """For a sample of rows across the matrix (and the extras cases), compat check says ok exactly where uv
    resolves the pair from the packages' metadata. CI cost: 25 uv resolutions, 6 at a time (~2-4 min)."""
    from concurrent.futures import ThreadPoolExecutor

    cases = oracle_cases()
    with ThreadPoolExecutor(max_workers=6) as pool:  # network-bound
        resolved = list(pool.map(lambda pair: _uv_resolves(pair, tmp_path), cases))
    rows, disagree = [], []
    for pair, (ok, why) in zip(cases, resolved, strict=True):
        verdict = _verdict(pair)
        agree = (verdict == "ok") == ok and verdict != "unknown"
        rows.append(f"{'agree' if agree else 'DISAGREE':8} {' + '.join(pair):55} gpuprov {verdict:12} uv {ok}")
        if not agree:
            disagree.append(f"{' + '.join(pair)}: gpuprov {verdict}, uv {'resolves' if ok else 'fails: ' + why}")
    print(f"\n{len(cases) - len(disagree)} of {len(cases)} pairs agree with uv pip compile\n" + "\n".join(rows))
    assert not disagree, "\n".join(disagree)
