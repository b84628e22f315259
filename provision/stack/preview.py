"""What making an environment would fetch, without installing anything: uv's resolution of the planned set
(``uv pip compile`` with the plan's pins as constraints) — the packages and versions, who requires each
(so ``plan`` can say why a prune candidate stays), and the download size from the index's file sizes
(the wheel uv would pick for this machine and the environment's Python; an sdist when there is no wheel)."""

from __future__ import annotations

import re
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.stack.spec import StackSpec
from provision.stack.uvrun import _uv, failure_line, uv_environ


@dataclass
class Preview:
    #: name → version, as uv resolved them
    packages: dict[str, str] = field(default_factory=dict)
    #: name → the packages (or "the request") that require it
    via: dict[str, list[str]] = field(default_factory=dict)
    download_bytes: int = 0
    #: packages with no wheel for this machine: built from source
    sdists: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def line(self) -> str:
        if self.error:
            return f"size unknown: uv could not resolve the set ({self.error})"
        size = f"{self.download_bytes / 2**20:,.0f} MiB" if self.download_bytes else "size unknown"
        built = f"; built from source: {', '.join(self.sdists)}" if self.sdists else ""
        return f"{len(self.packages)} packages, download {size} (less what uv has cached){built}"


def _python_version(spec: StackSpec) -> list[str]:
    if re.match(r"^3\.\d+", spec.python):
        return ["--python-version", spec.python]
    return ["--python", spec.python]


def _compatible(tags: set[str], filename: str) -> int | None:
    """The rank of a wheel's best tag among this machine's (lower is better), None when none fits."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, wheel_tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    ranks = [_TAG_RANK[str(t)] for t in wheel_tags if str(t) in tags]
    return min(ranks) if ranks else None


_TAG_RANK: dict[str, int] = {}


def _machine_tags(python: str) -> set[str]:
    """This machine's wheel tags for the environment's Python version (packaging's order: best first)."""
    from packaging import tags

    m = re.match(r"^3\.(\d+)", python)
    version = (3, int(m.group(1))) if m else None
    found = list(tags.sys_tags()) if version is None else [*tags.cpython_tags(version), *tags.compatible_tags(version)]
    _TAG_RANK.clear()
    for i, t in enumerate(found):
        _TAG_RANK.setdefault(str(t), i)
    return set(_TAG_RANK)


def preview(spec: StackSpec, *, timeout_s: float = 120) -> Preview:
    """uv's resolution of ``spec`` (network, or the wheelhouse offline); an error is reported, not raised."""
    requirements = list(spec.requirements)
    if spec.build:
        requirements.append(f"llama-cpp-python[server]=={spec.pins['llama-cpp-python']}")
    with tempfile.TemporaryDirectory(prefix="gpuprov-preview-") as tmp:
        req, con = Path(tmp) / "requirements.in", Path(tmp) / "constraints.txt"
        req.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        con.write_text("\n".join(spec.constraints) + "\n", encoding="utf-8")
        cmd = [*_uv(), "pip", "compile", str(req), "-c", str(con), "--no-header", "-q", *_python_version(spec)]
        if spec.wheelhouse:
            cmd += ["--offline", "--no-index", "--find-links", spec.wheelhouse]
        for url in spec.indexes:
            cmd += ["--extra-index-url", url, "--index-strategy", "unsafe-best-match"]
        try:
            plain = subprocess.run(cmd, env=uv_environ(), capture_output=True, text=True, timeout=timeout_s)
            lock = subprocess.run(
                [*cmd, "--format", "pylock.toml"], env=uv_environ(), capture_output=True, text=True, timeout=timeout_s
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Preview(error=str(exc))
    if plain.returncode != 0:
        return Preview(error=failure_line(plain.stderr))
    out = Preview()
    current = None
    for line in plain.stdout.splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            current = name.strip().lower()
            out.packages[current] = version.split(";")[0].strip()
        elif current and line.strip().startswith("#"):
            text = line.strip().lstrip("#").strip().removeprefix("via").strip()
            if text:
                who = "the request" if text.startswith("-r ") or text.startswith("-c ") else text
                out.via.setdefault(current, []).append(who)
    if lock.returncode == 0:
        _sizes(out, lock.stdout, spec.python)
    return out


def _sizes(out: Preview, text: str, python: str) -> None:
    try:
        data = tomllib.loads("\n".join(ln for ln in text.splitlines() if not ln.startswith("#")))
    except tomllib.TOMLDecodeError:
        return
    tags = _machine_tags(python)
    for package in data.get("packages", []):
        ranked = [
            (r, w)
            for w in package.get("wheels", [])
            if (r := _compatible(tags, Path(w.get("url", w.get("name", ""))).name)) is not None
        ]
        if ranked:
            out.download_bytes += int(min(ranked, key=lambda x: x[0])[1].get("size") or 0)
        elif package.get("sdist"):
            out.download_bytes += int(package["sdist"].get("size") or 0)
            out.sdists.append(str(package.get("name")))
