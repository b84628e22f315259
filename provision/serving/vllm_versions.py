"""vLLM options that some releases reject, gated on the vLLM installed in the profile's virtualenv
(compat.toml ``[vllm_options]``, with sources), and reading which vLLM that is (its dist-info, never imported)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
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


#: the one table of vLLM options whose acceptance depends on the release (compat.toml ``[vllm_options]``,
#: each with its source). With the installed vLLM's version known (its dist-info in the virtualenv), the
#: unit gets what that release takes; unknown, it gets what current releases take (the ones
#: ``gpuprov compat plan`` recommends). Read from gpuprov's own data file, once.
@cache
def vllm_options() -> dict[str, VllmOption]:
    text = resources.files("provision").joinpath("data/compat.toml").read_text(encoding="utf-8")
    rows = tomllib.loads(text)["vllm_options"]["options"]
    return {
        str(r["setting"]): VllmOption(
            str(r["flag"]), r.get("since"), r.get("until"), r.get("env_before"), str(r["source"])
        )
        for r in rows
    }


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
    """The options after ``vllm serve MODEL --host H --port P``, gated on :func:`vllm_options`."""
    options: list[str] = []
    env: list[tuple[str, str]] = []
    notes: list[str] = []
    where = f"vLLM {version} in {vllm_prefix(st)}" if version is not None else None
    for key, flag in VLLM.items():
        value = getattr(st, key)
        if value is None:
            continue
        text = argv_number(value) if isinstance(value, float) else str(value)
        gate = vllm_options().get(key)
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
