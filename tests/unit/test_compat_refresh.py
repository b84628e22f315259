"""compat refresh: pins parsed from real recorded wheel METADATA; the zip reader on a real zip."""

from __future__ import annotations

import io
import tomllib
import zipfile
from pathlib import Path

import pytest

from provision.compat.refresh import (
    RefreshError,
    metadata_from_zip_tail,
    pins_from_metadata,
    render_rows,
    requires_dist,
)

DATA = Path(__file__).parent.parent / "data" / "metadata"


def test_vllm_metadata_pins() -> None:
    text = (DATA / "vllm-0.10.1.METADATA").read_text(encoding="utf-8")
    assert len(requires_dist(text)) > 20
    pins = pins_from_metadata(
        "vllm", "0.10.1", text, "PyPI wheel METADATA: vllm-0.10.1-cp38-abi3-manylinux1_x86_64.whl"
    )
    assert pins.pins == {"torch": "2.7.1", "xformers": "0.0.31", "flashinfer": "0.2.11"}
    assert pins.extra_only == ["flashinfer"]


def test_xformers_metadata_pin() -> None:
    text = (DATA / "xformers-0.0.31.METADATA").read_text(encoding="utf-8")
    assert pins_from_metadata("xformers", "0.0.31", text, "x").pins == {"torch": "2.7.1"}


def test_rendered_rows_match_the_shipped_matrix() -> None:
    text = (DATA / "vllm-0.10.1.METADATA").read_text(encoding="utf-8")
    source = "PyPI wheel METADATA: vllm-0.10.1-cp38-abi3-manylinux1_x86_64.whl"
    rendered = tomllib.loads(render_rows("vllm", [pins_from_metadata("vllm", "0.10.1", text, source)]))
    shipped = tomllib.loads((Path(__file__).parents[2] / "provision" / "data" / "compat.toml").read_text())
    row = next(r for r in shipped["vllm"]["releases"] if r["version"] == "0.10.1")
    assert rendered["vllm"]["releases"] == [row]


def test_marker_for_another_platform_is_ignored() -> None:
    text = "Metadata-Version: 2.1\nName: x\nVersion: 1\nRequires-Dist: torch==2.7.1; platform_machine == 'aarch64'\n"
    assert pins_from_metadata("xformers", "1", text, "s").pins == {}


def _wheel(metadata: str, compress: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as zf:
        zf.writestr("pkg/__init__.py", "x = 1\n" * 5000)
        zf.writestr("pkg-1.0.dist-info/METADATA", metadata)
        zf.writestr("pkg-1.0.dist-info/RECORD", "")
    return buf.getvalue()


@pytest.mark.parametrize("compress", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
@pytest.mark.parametrize("tail_size", [64, 300, 10**6])
def test_metadata_from_a_zip_tail(compress: int, tail_size: int) -> None:
    metadata = (DATA / "xformers-0.0.31.METADATA").read_text(encoding="utf-8")
    blob = _wheel(metadata, compress)
    tail = blob[-tail_size:]
    name, text = metadata_from_zip_tail(tail, lambda start, end: blob[start : end + 1])
    assert name == "pkg-1.0.dist-info/METADATA"
    assert text == metadata


def test_not_a_zip() -> None:
    with pytest.raises(RefreshError, match="not a zip"):
        metadata_from_zip_tail(b"hello", lambda s, e: b"")
