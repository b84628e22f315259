"""The types of a llama-cpp-python build: the plan (what will run, and why), and its error."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from provision.errors import GpuprovError

PACKAGE = "llama-cpp-python"


class BuildError(GpuprovError):
    """The build cannot be planned or failed: the message says why and what to do."""


@dataclass
class BuildPlan:
    spec: str
    version: str | None
    cpu: bool
    archs: list[str]
    arch_reason: str
    nvcc: str | None
    cuda_version: str | None
    cuda_flag: str | None
    host_compiler: str | None
    cmake_args: list[str]
    env: dict[str, str]
    jobs: int
    python: str
    command: list[str]
    notes: list[str] = field(default_factory=list)

    def shell(self) -> str:
        """The plan as one copyable shell line."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"{env} {shlex.join(self.command)}".strip()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shell"] = self.shell()
        return d
