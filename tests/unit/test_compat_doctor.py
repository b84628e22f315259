"""The compatibility matrix inside `gpuprov doctor`: the same check, as findings with remedies."""

from __future__ import annotations

import json

from provision.diagnosis import diagnose
from provision.snapshot import PackageInfo
from tests.conftest import SNAPSHOTS, load_snapshot
from tests.unit.test_cli_doctor import gpuprov


def _ids(findings) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.id for f in findings}


def test_doctor_reports_the_laptop_snapshots_incompatibilities() -> None:
    """rtx4090-laptop: CUDA 12.8 on driver 560 (minor-version compatibility only). Its vllm 0.10.1 with flashinfer
    0.2.8 is no finding: vLLM pins 0.2.11 only under its [flashinfer] extra, which pip and uv enforce only when
    asked for, and an installed environment does not record the extras it was asked for."""
    findings = diagnose(load_snapshot("rtx4090-laptop"))
    compat = {f.id: f for f in findings if f.id.startswith("compat.")}
    assert set(compat) == {"compat.torch_driver", "compat.vllm_driver"}
    assert compat["compat.torch_driver"].severity == "warn"
    assert "[source: " in compat["compat.torch_driver"].message


def test_fixing_the_pair_removes_the_finding() -> None:
    snap = load_snapshot("rtx4090-laptop")
    snap.python.packages["xformers"] = PackageInfo("xformers", "0.0.30", None)  # vllm 0.10.1 pins 0.0.31
    assert "compat.vllm_xformers" in _ids(diagnose(snap))
    snap.python.packages["xformers"] = PackageInfo("xformers", "0.0.31", None)
    assert "compat.vllm_xformers" not in _ids(diagnose(snap))


def test_no_tracked_package_no_compat_finding() -> None:
    snap = load_snapshot("rtx4090")
    for name in ("torch", "vllm", "flashinfer-python", "xformers", "llama-cpp-python"):
        snap.python.packages.pop(name, None)
    assert not [f for f in diagnose(snap) if f.id.startswith("compat.")]


def test_cpu_build_findings_are_not_doubled() -> None:
    """torch / llama-cpp-python CPU builds are diagnosis's own checks: compat does not repeat them."""
    snap = load_snapshot("rtx4090")
    snap.python.packages["llama-cpp-python"] = PackageInfo("llama-cpp-python", "0.3.16", None)
    snap.python.llama_cpp_cuda = False
    ids = _ids(diagnose(snap))
    assert "compat.llama_cpp_cpu" not in ids
    assert any("llama" in i for i in ids)


def test_doctor_json_carries_the_compat_findings() -> None:
    proc = gpuprov("doctor", "--from", str(SNAPSHOTS / "rtx4090-laptop.constructed.json"), "--json")
    ids = {f["id"] for f in json.loads(proc.stdout)["findings"]}
    assert {"compat.torch_driver", "compat.vllm_driver"} <= ids
