"""vLLM options that some releases reject, gated on the vLLM installed in the profile's virtualenv
(:data:`VLLM_OPTIONS`, with sources), and reading which vLLM that is (its dist-info, never imported)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from packaging.version import Version

from provision.engineflags import VLLM, argv_number
from provision.serving.settings import VllmSettings
from provision.versions import version_or_none

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class VllmOption:
    """Which vLLM releases accept an option gpuprov writes. ``vllm serve`` builds its parser from
    EngineArgs, so an option that left EngineArgs fails the start ("unrecognized arguments")."""

    flag: str
    #: the first release that accepts it (None: every release gpuprov knows, compat.toml's coverage)
    since: str | None
    #: the first release that rejects it (None: current releases accept it)
    until: str | None
    #: the environment variable that releases before ``since`` read the value from instead
    env_before: str | None
    source: str


#: the one table of vLLM options whose acceptance depends on the release. With the installed vLLM's
#: version known (its dist-info in the virtualenv), the unit gets what that release takes; unknown, it
#: gets what current releases take (the ones ``gpuprov compat plan`` recommends).
VLLM_OPTIONS = {
    "attention_backend": VllmOption(
        "--attention-backend", since="0.12.0", until=None, env_before="VLLM_ATTENTION_BACKEND",
        source="vLLM PR #26315 (AttentionConfig: the attention env vars become CLI arguments, VLLM_ATTENTION_BACKEND "
        "deprecated), approved 2025-11-24: after v0.11.2 (2025-11-20), whose logs still choose the backend from "
        "the variable (FlagGems#1155), and before v0.12.0 (2025-12-03; dates: research/compat-sources.md). "
        "0.12.0 as the first release is by date: medium confidence",
    ),
    "swap_space_gib": VllmOption(
        "--swap-space", since=None, until="0.18.0", env_before=None,
        source="vLLM PR #36216 '[V0 Deprecation] Remove unused swap_space parameter' (merged 2026-03-06, removes "
        "--swap-space from EngineArgs); unsloth-zoo#1210: swap_space is in EngineArgs of 0.15.0-0.17.1 and in none "
        "of the 19 releases 0.18.0-0.29.0. The V1 engine never used it (vllm#27984)",
    ),
}  # fmt: skip


def vllm_prefix(st: VllmSettings) -> str:
    """The environment vLLM is installed in: the virtualenv, or the one the ``executable`` lives in."""
    return st.venv or str(PurePosixPath(st.executable or "/").parent.parent)


def installed_vllm(st: VllmSettings, root: Path) -> Version | None:
    """The vLLM release in the profile's environment under ``root``, from its ``vllm-*.dist-info``
    (read, never imported: ``root`` may be an image tree). None: not installed, or not one version."""
    found = set()
    for dist in (root / vllm_prefix(st).lstrip("/")).glob("lib/python3*/site-packages/vllm-*.dist-info"):
        version = None
        try:
            for line in (dist / "METADATA").read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Version:"):
                    version = version_or_none(line.partition(":")[2].strip())
                    break
                if not line:  # the headers end at the first empty line
                    break
        except OSError:
            version = version_or_none(dist.name.removeprefix("vllm-").removesuffix(".dist-info"))
        if version is None:
            return None
        found.add(version)
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class VllmArgs:
    """How a profile's vLLM settings reach the server, for one vLLM release (None: not known)."""

    options: list[str]
    environment: list[tuple[str, str]]
    notes: list[str]


def vllm_args(st: VllmSettings, version: Version | None) -> VllmArgs:
    """The options after ``vllm serve MODEL --host H --port P``, gated on :data:`VLLM_OPTIONS`."""
    options: list[str] = []
    env: list[tuple[str, str]] = []
    notes: list[str] = []
    where = f"vLLM {version} in {vllm_prefix(st)}" if version is not None else None
    for key, flag in VLLM.items():
        value = getattr(st, key)
        if value is None:
            continue
        text = argv_number(value) if isinstance(value, float) else str(value)
        gate = VLLM_OPTIONS.get(key)
        if gate is not None and gate.until is not None and (version is None or version >= Version(gate.until)):
            notes.append(
                f"serving.vllm.{key} is left out: vLLM {gate.until} and later reject {gate.flag}, and "
                + (f"{where} is one of them" if where else f"the vLLM version in {vllm_prefix(st)} is not known")
            )
            continue
        if gate is not None and gate.since is not None and version is not None and version < Version(gate.since):
            if gate.env_before is None:
                notes.append(f"serving.vllm.{key} is left out: {gate.flag} is vLLM {gate.since}+, and {where} is older")
                continue
            env.append((gate.env_before, text))  # what releases before the option read instead
            continue
        options += [flag, text]
    return VllmArgs(options, env, notes)
