"""The compatibility matrix as ``gpuprov doctor`` findings.

Registered through :data:`provision.diagnosis.CHECK_MODULES`. Importing this module costs nothing:
the matrix (TOML) is read only when a snapshot has something to check.
"""

from __future__ import annotations

from collections.abc import Iterable

from provision.diagnosis import Finding, check
from provision.snapshot import Snapshot

_SEVERITY = {"incompatible": "error", "warning": "warn", "unknown": "info"}
_TRACKED = ("torch", "vllm", "flashinfer-python", "flashinfer", "xformers", "llama-cpp-python")


@check
def compat_matrix(s: Snapshot) -> Iterable[Finding]:
    if not any(name in s.python.packages for name in _TRACKED):
        return
    from provision.compat.target import target_from_snapshot
    from provision.compat.verdict import check as compat_check

    report = compat_check(target_from_snapshot(s))
    for problem in report.problems:
        if problem.kind in ("torch_cpu", "llama_cpp_cpu"):
            continue  # diagnosis's torch / llama-cpp-python CPU-build checks already say it
        yield Finding(
            f"compat.{problem.kind}",
            _SEVERITY[problem.severity],
            f"{problem.pair}: {problem.reason} [source: {problem.source}]",
            problem.fix or "gpuprov compat plan",
            "python",
        )
