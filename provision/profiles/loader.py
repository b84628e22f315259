"""Finding and reading profile files: built-ins (package data), then ``/etc/gpuprov/profiles/``, then
``~/.config/gpuprov/profiles/`` (``$XDG_CONFIG_HOME``). A later layer overrides a profile of the same
name; ``extends: NAME`` resolves in the same layer or below (a user file ``rtx4090.yaml`` with
``extends: rtx4090`` extends the built-in one).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

# the sections that live with the capability they describe register themselves when imported: a profile
# read here may have any of them
from provision import llama_build as _llama_build  # noqa: F401
from provision.monitor import section as _monitoring_section  # noqa: F401
from provision.profiles.chain import build, check_header, merge
from provision.profiles.schema import NAME_RE, Profile, ProfileError
from provision.serving import section as _serving_section  # noqa: F401
from provision.stack import section as _stack_section  # noqa: F401

#: a profile file larger than this is refused (they are a few hundred bytes)
MAX_FILE_BYTES = 256 * 1024
MAX_EXTENDS_DEPTH = 16
LAYERS = ("builtin", "system", "user")


@dataclass(frozen=True)
class ProfileFile:
    name: str
    path: str
    layer: int
    data: dict[str, Any]


def builtin_dir() -> Path:
    return Path(str(resources.files("provision") / "data" / "profiles"))


def default_dirs(*, root: Path = Path("/"), environ: dict[str, str] | None = None) -> list[Path]:
    """The three layers, most general first."""
    env = os.environ if environ is None else environ
    config = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return [builtin_dir(), root / "etc/gpuprov/profiles", Path(config) / "gpuprov/profiles"]


def parse_text(text: str, file: str) -> dict[str, Any]:
    """YAML text → the header-checked mapping of one profile file. Raises only ProfileError."""
    if len(text) > MAX_FILE_BYTES:
        raise ProfileError(f"{file}: larger than {MAX_FILE_BYTES // 1024} KiB: not a profile")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ProfileError(f"{file}: not valid YAML{line}: {problem}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # PyYAML's constructors raise these for values like a date 2020-13-45
        raise ProfileError(f"{file}: not valid YAML: {type(exc).__name__}: {exc}"[:300]) from None
    where = _lone_surrogate(data)
    if where is not None:
        # a YAML escape like "\\ud800" makes a lone surrogate: no file, unit or terminal can hold it
        raise ProfileError(f"{file}: {where or 'the document'}: a \\u escape that is not a character (lone surrogate)")
    return check_header(data, file)


def _lone_surrogate(data: Any, where: str = "") -> str | None:
    """The dotted place of the first string (key or value) holding a lone surrogate, else None."""
    if isinstance(data, str):
        return where if _SURROGATE.search(data) else None
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and _SURROGATE.search(key):
                return where or "a key"
            found = _lone_surrogate(value, here)
            if found is not None:
                return found
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found = _lone_surrogate(value, f"{where}[{i}]")
            if found is not None:
                return found
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def read_file(path: Path, layer: int) -> ProfileFile:
    name = path.stem
    if not NAME_RE.match(name):
        raise ProfileError(
            f"{path}: a profile file is named NAME.yaml, NAME in lowercase letters, digits, '.', '_', '-'"
        )
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return ProfileFile(name, str(path), layer, parse_text(text, str(path)))


class ProfileSet:
    """Every profile file in the given directories, resolved on demand."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self.files: dict[tuple[int, str], ProfileFile] = {}
        #: files that could not be read, with the reason (listed by ``gpuprov profiles``)
        self.errors: list[ProfileError] = []
        for layer, d in enumerate(dirs):
            try:
                entries = sorted(d.iterdir())
            except OSError:
                continue
            for path in entries:
                if path.suffix not in (".yaml", ".yml") or not path.is_file():
                    continue
                try:
                    pf = read_file(path, layer)
                except ProfileError as exc:
                    self.errors.append(exc)
                    continue
                if (layer, pf.name) in self.files:
                    other = self.files[(layer, pf.name)].path
                    self.errors.append(ProfileError(f"{path}: profile {pf.name!r} is also defined in {other}"))
                    continue
                self.files[(layer, pf.name)] = pf

    def names(self) -> list[str]:
        return sorted({name for _, name in self.files})

    def _find(self, name: str, below: int) -> ProfileFile | None:
        for layer in reversed(range(below)):
            pf = self.files.get((layer, name))
            if pf is not None:
                return pf
        return None

    def load(self, name: str) -> Profile:
        top = self._find(name, len(self.dirs))
        if top is None:
            for err in self.errors:
                if f"/{name}.y" in err.message.split(":")[0]:
                    raise err
            known = ", ".join(self.names()) or "none"
            raise ProfileError(f"no profile named {name!r} (known: {known}); see gpuprov profiles")
        chain = [top]
        while True:
            ext = chain[-1].data.get("extends")
            if not ext:
                break
            # a profile extending its own name extends the definition one layer down
            below = chain[-1].layer if ext == chain[-1].name else chain[-1].layer + 1
            parent = self._find(ext, below)
            if parent is None:
                raise ProfileError(f"{chain[-1].path}: key extends: no profile named {ext!r} to extend")
            if parent in chain or len(chain) >= MAX_EXTENDS_DEPTH:
                names = " -> ".join(pf.name for pf in [*chain, parent])
                raise ProfileError(f"{chain[-1].path}: key extends: profiles extend each other in a loop ({names})")
            chain.append(parent)
        merged: dict[str, Any] = {}
        for pf in reversed(chain):
            merged = merge(merged, pf.data)
        return build(
            name,
            merged,
            file=top.path,
            chain=tuple(pf.path for pf in reversed(chain)),
            builtin=all(pf.layer == 0 for pf in chain) and self.dirs[0] == builtin_dir(),
        )

    def load_all(self) -> tuple[list[Profile], list[ProfileError]]:
        profiles, errors = [], list(self.errors)
        for name in self.names():
            try:
                profiles.append(self.load(name))
            except ProfileError as exc:
                if all(exc.message != e.message for e in errors):
                    errors.append(exc)
        return profiles, errors


def profile_set(dirs: list[Path] | None = None, *, root: Path = Path("/")) -> ProfileSet:
    return ProfileSet(dirs if dirs is not None else default_dirs(root=root))


def load_profile(name: str, dirs: list[Path] | None = None, *, root: Path = Path("/")) -> Profile:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ProfileError(
            f"{name!r} is not a profile name (lowercase letters, digits, '.', '_', '-'); see gpuprov profiles"
        )
    return profile_set(dirs, root=root).load(name)
