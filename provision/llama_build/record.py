"""The build record: what gpuprov built into an environment (a file beside the libraries), so a second
apply knows the build is already as asked."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from provision.llama_build.buildplan import BuildPlan
from provision.llama_build.run import BuildResult
from provision.llama_build.verify import _INSPECT, _run_json

# -- what is installed, and the profile section -----------------------------------------------------

#: written next to the libraries after a verified build: what gpuprov built there, so a second apply
#: knows the build is already as asked (kernels cannot be listed without cuobjdump)
MARKER = "gpuprov-build.json"


def installed_build(python: str) -> dict[str, Any] | None:
    """What gpuprov recorded about the llama-cpp-python in ``python``'s environment (None: nothing)."""
    info, _ = _run_json(python, _INSPECT)
    if not info or not info.get("package_dir"):
        return None
    marker = Path(info["package_dir"]) / "lib" / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"recorded": False}
    return {"recorded": True, **data} if isinstance(data, dict) else {"recorded": False}


def record_build(plan: BuildPlan, result: BuildResult) -> None:
    info, _ = _run_json(plan.python, _INSPECT)
    if not info or not info.get("package_dir"):
        return
    lib = Path(info["package_dir"]) / "lib"
    lib.mkdir(exist_ok=True)
    record = {
        "version": plan.version,
        "cpu": plan.cpu,
        "archs": plan.archs,
        "cuda_version": plan.cuda_version,
        "cmake_args": plan.cmake_args,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": round(result.duration_s, 1),
    }
    (lib / MARKER).write_text(json.dumps(record, indent=2), encoding="utf-8")


def build_matches(installed: dict[str, Any] | None, plan: BuildPlan) -> tuple[bool, str]:
    """Is what is installed what ``plan`` would build? (answer, reason shown in plan/apply)."""
    if installed is None:
        return False, "llama-cpp-python is not installed there"
    if not installed.get("recorded"):
        return False, "installed, but not built by gpuprov (unknown architectures)"
    if plan.version and installed.get("version") != plan.version:
        return False, f"version {installed.get('version') or '?'} installed, {plan.version} asked"
    if bool(installed.get("cpu")) != plan.cpu:
        return False, "a " + ("CUDA" if plan.cpu else "CPU") + " build is installed"
    if sorted(installed.get("archs") or []) != sorted(plan.archs):
        have = ", ".join("sm_" + a for a in installed.get("archs") or []) or "none"
        return False, f"built for {have}, needed {', '.join('sm_' + a for a in plan.archs) or 'CPU'}"
    return True, "already built as asked"
