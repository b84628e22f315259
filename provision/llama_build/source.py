"""Which llama-cpp-python version a ``--source`` (an sdist or a source directory) is."""

from __future__ import annotations

import re
import tarfile
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from provision.errors import UsageError
from provision.llama_build.buildplan import PACKAGE

# -- the source being built --------------------------------------------------------------------------

_SDIST_NAME = re.compile(r"llama[_-]cpp[_-]python-(\d+\.\d+\.\d+)")
_SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


def _pkg_info_fields(text: str) -> tuple[str | None, str | None]:
    """(Name, Version) from PKG-INFO / METADATA headers."""
    name = version = None
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line
        key, _, value = line.partition(":")
        if key == "Name":
            name = value.strip()
        elif key == "Version":
            version = value.strip()
    return name, version


def _sdist_pkg_info(path: Path) -> str | None:
    """The top-level PKG-INFO of an sdist archive (None: none there); UsageError when it is no archive."""
    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if re.fullmatch(r"[^/]+/PKG-INFO", n)), None)
                return zf.read(member).decode("utf-8", "replace") if member else None
        with tarfile.open(path, "r:*") as tf:
            for entry in tf:
                if entry.isfile() and re.fullmatch(r"[^/]+/PKG-INFO", entry.name):
                    fh = tf.extractfile(entry)
                    return fh.read().decode("utf-8", "replace") if fh else None
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"--source {path}: not a readable sdist archive ({exc})") from None
    return None


def _dir_name_version(path: Path) -> tuple[str | None, str | None]:
    """(name, version) of a source directory: its PKG-INFO (an unpacked sdist), else pyproject.toml's
    [project] and, for a dynamic version, llama_cpp/__init__.py's ``__version__`` (what scikit-build-core reads)."""
    import tomllib

    pkg_info = path / "PKG-INFO"
    if pkg_info.is_file():
        return _pkg_info_fields(pkg_info.read_text(encoding="utf-8", errors="replace"))
    try:
        project = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        project = {}
    name = project.get("name") if isinstance(project.get("name"), str) else None
    version = project.get("version") if isinstance(project.get("version"), str) else None
    if version is None:
        try:
            init = (path / "llama_cpp" / "__init__.py").read_text(encoding="utf-8", errors="replace")
        except OSError:
            init = ""
        m = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", init, re.M)
        version = m.group(1) if m else None
    return name, version


def source_version(source: str) -> str | None:
    """The llama-cpp-python version of ``--source`` (an sdist or a source directory); None when it does not
    say. A UsageError for anything else, or for another package's source."""
    path = Path(source)
    if path.is_dir():
        if not (path / "pyproject.toml").is_file() and not (path / "setup.py").is_file():
            raise UsageError(f"--source {source}: a directory without pyproject.toml or setup.py is no source tree")
        name, version = _dir_name_version(path)
    elif path.is_file():
        if not path.name.endswith(_SDIST_SUFFIXES):
            raise UsageError(
                f"--source {source}: neither an sdist ({', '.join(_SDIST_SUFFIXES)}) nor a source directory"
            )
        m = _SDIST_NAME.search(path.name)
        if m:
            return m.group(1)
        text = _sdist_pkg_info(path)
        name, version = _pkg_info_fields(text) if text else (None, None)
    else:
        raise UsageError(f"--source {source}: no such file or directory")
    if name and canonicalize_name(name) != PACKAGE:
        raise UsageError(f"--source {source}: that is the source of {name}, not {PACKAGE}")
    try:
        return str(Version(version)) if version else None
    except InvalidVersion:
        return None
