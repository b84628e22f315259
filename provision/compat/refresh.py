"""``gpuprov compat refresh``: regenerate the vLLM / xformers / flashinfer → torch rows of the matrix
from the packages' published metadata.

A maintainers' tool: its output is reviewed and pasted into ``provision/data/compat.toml``; nothing
at run time fetches anything. The pins are read from each release's ``Requires-Dist`` — the wheel's
own ``*.dist-info/METADATA``, which is what pip and uv enforce. When the index serves PEP 658
metadata (``<wheel>.metadata``) that file is fetched; otherwise the METADATA member is read out of
the wheel with HTTP range requests (the zip central directory, then the one member), so a
multi-hundred-MB wheel costs a few kB.
"""

from __future__ import annotations

import json
import re
import struct
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import HeaderParser

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from provision.errors import GpuprovError

DEFAULT_INDEX = "https://pypi.org/simple"
#: the packages refresh knows how to turn into matrix rows
PACKAGES = ("vllm", "xformers", "flashinfer-python")
#: the pins a vLLM row records: requirement name → row field
_VLLM_PINS = {"torch": "torch", "xformers": "xformers", "flashinfer-python": "flashinfer"}

Fetch = Callable[[str, dict[str, str]], bytes]


class RefreshError(GpuprovError):
    """The index could not be read or a wheel's METADATA could not be found."""


# -- parsing (pure) --------------------------------------------------------------------------------


def requires_dist(metadata_text: str) -> list[Requirement]:
    """The ``Requires-Dist`` requirements of a core-metadata document (PEP 566 / 643)."""
    headers = HeaderParser().parsestr(metadata_text, headersonly=True)
    out = []
    for line in headers.get_all("Requires-Dist") or []:
        try:
            out.append(Requirement(line))
        except InvalidRequirement:
            continue
    return out


def exact_pin(req: Requirement) -> str | None:
    """'2.7.1' for ``torch==2.7.1``; None for a range or no specifier."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def _applies_on_linux_x86_64(req: Requirement) -> tuple[bool, str | None]:
    """(applies on Linux x86_64 for no extra or some extra, the extra it needs — None: unconditional).

    A requirement under ``extra == "sm107"`` is enforced only when that extra is asked for
    (``flashinfer-python[sm107]``): pip and uv ignore it otherwise.
    """
    if req.marker is None:
        return True, None
    env = {
        "platform_machine": "x86_64",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "python_version": "3.12",
        "python_full_version": "3.12.0",
    }
    if req.marker.evaluate({**env, "extra": ""}):
        return True, None
    extras = re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", str(req.marker))
    for extra in extras:
        if req.marker.evaluate({**env, "extra": extra}):
            return True, str(canonicalize_name(extra))
    return False, None


@dataclass
class Pins:
    """What one release's metadata says about the packages the matrix tracks."""

    package: str
    version: str
    source: str
    #: row field → pinned version ("torch" → "2.7.1")
    pins: dict[str, str] = field(default_factory=dict)
    #: row field → specifier text for unpinned requirements ("torch" → ">=2.10")
    ranges: dict[str, str] = field(default_factory=dict)
    #: row fields pinned only under an extra (vllm[flashinfer])
    extra_only: list[str] = field(default_factory=list)
    #: row field → extra → specifier text, for requirements that apply only under that extra
    #: (flashinfer-python 0.7.4: "torch" → {"sm107": ">=2.8", "b12x": ">=2.12.0"}); not in ``ranges``
    extra_ranges: dict[str, dict[str, str]] = field(default_factory=dict)


def pins_from_metadata(package: str, version: str, metadata_text: str, source: str) -> Pins:
    """The torch / xformers / flashinfer requirements of one release, as a matrix row."""
    wanted = _VLLM_PINS if canonicalize_name(package) == "vllm" else {"torch": "torch"}
    result = Pins(package=canonicalize_name(package), version=version, source=source)
    is_vllm = result.package == "vllm"
    unconditional: set[str] = set()
    for req in requires_dist(metadata_text):
        fld = wanted.get(canonicalize_name(req.name))
        if fld is None:
            continue
        applies, extra = _applies_on_linux_x86_64(req)
        if not applies:
            continue
        pin = exact_pin(req)
        if extra is not None and not is_vllm:
            result.extra_ranges.setdefault(fld, {})[extra] = str(req.specifier)
            continue
        if extra is not None and fld in unconditional:
            continue  # the unconditional requirement is what every install gets
        if extra is None:
            unconditional.add(fld)
            if fld in result.extra_only:
                result.extra_only.remove(fld)
                result.pins.pop(fld, None)
                result.ranges.pop(fld, None)
        if pin is not None:
            result.pins[fld] = pin
        elif str(req.specifier):
            result.ranges[fld] = str(req.specifier)
        else:
            result.ranges.setdefault(fld, "")
        if extra is not None and fld not in result.extra_only:
            result.extra_only.append(fld)
    return result


def _toml_str(value: str) -> str:
    return json.dumps(value)


def _toml_key(value: str) -> str:
    return value if re.fullmatch(r"[A-Za-z0-9_-]+", value) else json.dumps(value)


def render_row(row: Pins) -> str:
    """One row as a TOML inline table, the layout of compat.toml's ``[vllm]`` / ``[xformers]`` /
    ``[flashinfer_pins]`` ``releases``."""
    parts = [f"version = {_toml_str(row.version)}"]
    for fld in ("torch", "xformers", "flashinfer"):
        if fld in row.pins:
            parts.append(f"{fld} = {_toml_str(row.pins[fld])}")
        elif fld in row.ranges and row.package != "vllm":
            parts.append(f"{fld}_range = {_toml_str(row.ranges[fld])}")
    if "flashinfer" in row.extra_only and "flashinfer" in row.pins:
        parts.append("flashinfer_extra = true")
    if "torch" in row.extra_ranges and row.package != "vllm":
        extras = ", ".join(f"{_toml_key(k)} = {_toml_str(v)}" for k, v in sorted(row.extra_ranges["torch"].items()))
        parts.append(f"torch_extras = {{ {extras} }}")
    parts.append(f"source = {_toml_str(row.source)}")
    return "{ " + ", ".join(parts) + " },"


def render_rows(package: str, rows: Iterable[Pins]) -> str:
    """A TOML table ready to replace the one of the same name in compat.toml."""
    name = {"vllm": "vllm", "xformers": "xformers", "flashinfer-python": "flashinfer_pins"}[canonicalize_name(package)]
    body = "\n".join("  " + render_row(r) for r in rows)
    return f"[{name}]\nreleases = [\n{body}\n]\n"


# -- zip reading over HTTP range requests ------------------------------------------------------------

_EOCD = b"PK\x05\x06"
_CDH = b"PK\x01\x02"


def metadata_from_zip_tail(tail: bytes, read_range: Callable[[int, int], bytes]) -> tuple[str, str]:
    """Find ``*.dist-info/METADATA`` through the central directory in ``tail`` (the file's last bytes)
    and read it with ``read_range(start, end_inclusive)``.

    The central directory ends where the end-of-central-directory record starts, which places the
    tail in the file without knowing the file's size. Returns (member name, text).
    """
    pos = tail.rfind(_EOCD)
    if pos < 0:
        raise RefreshError("not a zip file: no end-of-central-directory record")
    cd_size, cd_offset = struct.unpack("<II", tail[pos + 12 : pos + 20])
    if cd_offset == 0xFFFFFFFF:
        raise RefreshError("zip64 wheels (over 4 GiB) are not supported")
    tail_offset = cd_offset + cd_size - pos
    if cd_offset < tail_offset:
        central = read_range(cd_offset, cd_offset + cd_size - 1)
    else:
        central = tail[cd_offset - tail_offset : cd_offset - tail_offset + cd_size]
    i = 0
    while i + 46 <= len(central) and central[i : i + 4] == _CDH:
        method, _t, _d, _crc, csize, _usize, nlen, elen, clen = struct.unpack("<HHHIIIHHH", central[i + 10 : i + 34])
        local_offset = struct.unpack("<I", central[i + 42 : i + 46])[0]
        name = central[i + 46 : i + 46 + nlen].decode("utf-8", "replace")
        i += 46 + nlen + elen + clen
        if not re.fullmatch(r"[^/]+\.dist-info/METADATA", name):
            continue
        header = read_range(local_offset, local_offset + 29)
        lnlen, lelen = struct.unpack("<HH", header[26:30])
        start = local_offset + 30 + lnlen + lelen
        data = read_range(start, start + csize - 1) if csize else b""
        if method == 8:
            data = zlib.decompress(data, -15)
        elif method != 0:
            raise RefreshError(f"{name}: unsupported zip compression method {method}")
        return name, data.decode("utf-8", "replace")
    raise RefreshError("no *.dist-info/METADATA in the wheel")


# -- the index -------------------------------------------------------------------------------------


def _urlopen(url: str, headers: dict[str, str]) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "gpuprov-compat-refresh", **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body: bytes = resp.read()  # urlopen's response is untyped (Any) in typeshed
            return body
    except OSError as exc:
        raise RefreshError(f"cannot fetch {url}: {exc}") from None


@dataclass(frozen=True)
class WheelFile:
    filename: str
    url: str
    version: Version
    has_metadata_file: bool


def _prefer(filename: str) -> int:
    """Lower is better: a Linux x86_64 wheel (what the matrix describes), then a pure wheel."""
    if "x86_64" in filename and "linux" in filename:
        return 0
    if filename.endswith("-none-any.whl"):
        return 1
    return 2


def list_wheels(package: str, *, index: str = DEFAULT_INDEX, fetch: Fetch = _urlopen) -> dict[Version, WheelFile]:
    """One wheel per final release of ``package`` on a PEP 691 (JSON simple API) index."""
    url = f"{index.rstrip('/')}/{canonicalize_name(package)}/"
    try:
        data = json.loads(fetch(url, {"Accept": "application/vnd.pypi.simple.v1+json"}))
    except json.JSONDecodeError:
        raise RefreshError(f"{url}: not a PEP 691 JSON index page") from None
    best: dict[Version, WheelFile] = {}
    for f in data.get("files", []):
        filename = f.get("filename", "")
        if not filename.endswith(".whl") or f.get("yanked"):
            continue
        try:
            _, version, _, _ = parse_wheel_filename(filename)
        except (InvalidWheelFilename, InvalidVersion):
            continue
        if version.is_prerelease or version.is_devrelease or version.local:
            continue
        wheel = WheelFile(filename, f["url"], version, bool(f.get("core-metadata") or f.get("data-dist-info-metadata")))
        if version not in best or _prefer(filename) < _prefer(best[version].filename):
            best[version] = wheel
    return best


def read_metadata(wheel: WheelFile, *, fetch: Fetch = _urlopen) -> str:
    if wheel.has_metadata_file:
        return fetch(wheel.url.split("#")[0] + ".metadata", {}).decode("utf-8", "replace")
    url = wheel.url.split("#")[0]
    tail = fetch(url, {"Range": "bytes=-262144"})

    def read_range(start: int, end: int) -> bytes:
        return fetch(url, {"Range": f"bytes={start}-{end}"})

    _, text = metadata_from_zip_tail(tail, read_range)
    return text


def refresh(
    package: str,
    *,
    since: str | None = None,
    index: str = DEFAULT_INDEX,
    fetch: Fetch = _urlopen,
    progress: Callable[[str], None] | None = None,
) -> list[Pins]:
    """Pins of every final release of ``package`` (from ``since`` on), oldest first."""
    if canonicalize_name(package) not in PACKAGES:
        raise RefreshError(f"refresh knows {', '.join(PACKAGES)}, not {package!r}")
    try:
        floor = Version(since) if since else None
    except InvalidVersion:
        raise RefreshError(f"--since {since!r} is not a version (e.g. 0.10.0)") from None
    wheels = [
        (version, wheel)
        for version, wheel in sorted(list_wheels(package, index=index, fetch=fetch).items())
        if floor is None or version >= floor
    ]
    # the metadata files are small and many (flashinfer-python has ~100 releases): read them 8 at a time
    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = pool.map(lambda vw: read_metadata(vw[1], fetch=fetch), wheels)
        rows = []
        for (version, wheel), text in zip(wheels, texts, strict=True):
            if progress:
                progress(wheel.filename)
            rows.append(pins_from_metadata(package, str(version), text, f"PyPI wheel METADATA: {wheel.filename}"))
    return rows
