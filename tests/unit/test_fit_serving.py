"""A profile's vLLM serving section is fitted for the vLLM installed in its environment: V0 releases
(before 0.8.0) profile whole max-model-len prompts, so the same settings that start under V1 do not
start under 0.6.4 (vllm#10517), and plan says so."""

from __future__ import annotations

import json
from pathlib import Path

from packaging.version import Version

from provision.fit.hf_dir import read_hf_dir
from provision.serving.facts import ServingHost
from provision.serving.planning import fit_notes
from provision.serving.settings import ServingSection, VllmSettings
from provision.snapshot import Snapshot
from tests.unit.test_fit_cli import LLAMA31_8B

SNAPSHOTS = Path(__file__).parent.parent / "data" / "snapshots"


def test_plan_fits_the_installed_vllm_release(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA31_8B))
    spec = read_hf_dir(tmp_path)
    snapshot = Snapshot.load(SNAPSHOTS / "l4.published.json")
    model = "/srv/models/llama31"
    section = ServingSection(
        engine="vllm",
        settings=VllmSettings(model=model, venv="/opt/vllm", max_model_len=24000, gpu_memory_utilization=0.9),
    )

    def notes(version: str | None) -> list[str]:
        facts = ServingHost(vllm_version=Version(version) if version else None, present={model: True}, model=spec)
        return fit_notes(section, snapshot, facts)

    assert notes("0.10.1") == []
    assert notes(None) == []
    [warning] = notes("0.6.4")
    assert warning.startswith(f"WARNING: serving model {model} does not fit")
