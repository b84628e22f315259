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


def test_requirements_under_an_extra_are_not_the_release_range() -> None:
    """flashinfer-python 0.7.4 requires torch>=2.8 only with [sm107]: refresh once made it the release's own range
    (so 0.7.4 + torch 2.7.1 was "incompatible" although pip and uv install it)."""
    text = (DATA / "flashinfer_python-0.7.4.METADATA").read_text(encoding="utf-8")
    pins = pins_from_metadata("flashinfer-python", "0.7.4", text, "s")
    assert pins.ranges == {"torch": ""}
    assert pins.extra_ranges == {"torch": {"sm107": ">=2.8", "b12x": ">=2.12.0"}}
    row = tomllib.loads(render_rows("flashinfer-python", [pins]))["flashinfer_pins"]["releases"][0]
    assert row["torch_range"] == "" and row["torch_extras"] == {"b12x": ">=2.12.0", "sm107": ">=2.8"}
    shipped = tomllib.loads((Path(__file__).parents[2] / "provision" / "data" / "compat.toml").read_text())
    same = next(r for r in shipped["flashinfer_pins"]["releases"] if r["version"] == "0.7.4")
    assert (same["torch_range"], same["torch_extras"]) == (row["torch_range"], row["torch_extras"])


def test_an_unconditional_pin_wins_over_the_same_under_an_extra() -> None:
    text = (
        "Metadata-Version: 2.1\nName: vllm\nVersion: 9\n"
        'Requires-Dist: flashinfer-python==0.2.0; extra == "flashinfer"\nRequires-Dist: flashinfer-python==0.3.0\n'
    )
    pins = pins_from_metadata("vllm", "9", text, "s")
    assert pins.pins == {"flashinfer": "0.3.0"} and pins.extra_only == []
    text = (DATA / "vllm-0.34.0.METADATA").read_text(encoding="utf-8")
    assert pins_from_metadata("vllm", "0.34.0", text, "s").pins == {"torch": "2.14.0", "flashinfer": "0.7.3"}


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


def _fake_index(files: dict[str, str]):  # type: ignore[no-untyped-def]
    """A PEP 691 index page and PEP 658 metadata files, served from a dict (filename → METADATA text)."""
    import json

    def fetch(url: str, headers: dict[str, str]) -> bytes:
        if url.endswith("/flashinfer-python/"):
            assert headers.get("Accept") == "application/vnd.pypi.simple.v1+json"
            page = [
                {
                    "filename": name,
                    "url": f"https://files.example/{name}",
                    "core-metadata": True,
                    "yanked": name == "flashinfer_python-0.7.3-py3-none-any.whl",
                }
                for name in files
            ] + [{"filename": "flashinfer_python-0.7.0.tar.gz", "url": "https://files.example/sdist"}]
            return json.dumps({"files": page}).encode()
        name = url.removeprefix("https://files.example/").removesuffix(".metadata")
        return files[name].encode()

    return fetch


def test_refresh_end_to_end_on_a_fake_index() -> None:
    from provision.compat.refresh import refresh

    meta = "Metadata-Version: 2.1\nName: flashinfer-python\nVersion: {v}\n{req}"
    files = {
        "flashinfer_python-0.7.0-py3-none-any.whl": meta.format(v="0.7.0", req=""),
        "flashinfer_python-0.7.1-py3-none-any.whl": meta.format(v="0.7.1", req="Requires-Dist: torch>=2.8\n"),
        "flashinfer_python-0.7.2rc1-py3-none-any.whl": meta.format(v="0.7.2rc1", req=""),  # pre-release: skipped
        "flashinfer_python-0.7.3-py3-none-any.whl": meta.format(v="0.7.3", req=""),  # yanked: skipped
        "flashinfer_python-0.6.0-py3-none-any.whl": meta.format(v="0.6.0", req=""),
    }
    seen: list[str] = []
    rows = refresh(
        "flashinfer-python",
        since="0.7.0",
        index="https://idx.example/simple",
        fetch=_fake_index(files),
        progress=seen.append,
    )
    assert [r.version for r in rows] == ["0.7.0", "0.7.1"]
    assert rows[1].ranges == {"torch": ">=2.8"}
    table = tomllib.loads(render_rows("flashinfer-python", rows))["flashinfer_pins"]["releases"]
    assert table[1] == {
        "version": "0.7.1",
        "torch_range": ">=2.8",
        "source": "PyPI wheel METADATA: flashinfer_python-0.7.1-py3-none-any.whl",
    }
    assert seen == ["flashinfer_python-0.7.0-py3-none-any.whl", "flashinfer_python-0.7.1-py3-none-any.whl"]


def test_refresh_since_must_be_a_version() -> None:
    from provision.compat.refresh import refresh

    with pytest.raises(RefreshError, match="--since 'banana' is not a version"):
        refresh("flashinfer-python", since="banana", fetch=_fake_index({}))
