"""What ``compat check`` answers: the problems found between pairs, and the verdict they add up to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

VERDICTS = ("ok", "unknown", "incompatible")
EXIT_CODES = {"ok": 0, "incompatible": 1, "unknown": 3}


@dataclass(frozen=True)
class Problem:
    #: "incompatible", "unknown" or "warning"
    severity: str
    #: the two things that disagree: "torch 2.7.1+cu128 ↔ driver 470.256.02"
    pair: str
    reason: str
    source: str
    fix: str
    #: stable id for doctor findings: "torch_driver", "vllm_torch" ...
    kind: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Report:
    verdict: str
    problems: list[Problem] = field(default_factory=list)
    #: the pairs that were checked
    checked: list[str] = field(default_factory=list)
    #: what could not be checked and why (missing driver, no GPU)
    skipped: list[str] = field(default_factory=list)
    #: versions newer than the matrix has rows for: "vllm 0.35.0 is newer than the matrix (…)"
    stale: list[str] = field(default_factory=list)
    #: how old the matrix is: {"refreshed": "2026-12-04", "age_days": 3, "overlay": path or None}
    matrix: dict[str, object] = field(default_factory=dict)
    #: the interpreter whose installed packages were checked (``compat check --python``); None: a snapshot's
    interpreter: str | None = None
    python_version: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "verdict": self.verdict,
            "problems": [p.to_dict() for p in self.problems],
            "checked": self.checked,
            "skipped": self.skipped,
            "stale": self.stale,
            "matrix": self.matrix,
        }
        if self.interpreter is not None:
            out["python"] = {"interpreter": self.interpreter, "python_version": self.python_version}
        return out


def verdict_of(problems: list[Problem]) -> str:
    if any(p.severity == "incompatible" for p in problems):
        return "incompatible"
    if any(p.severity == "unknown" for p in problems):
        return "unknown"
    return "ok"
