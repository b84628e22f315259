"""The generated tables of the matrix ([vllm], [xformers], [flashinfer_pins]) against the live index: every row's
torch / xformers / flashinfer-python pins, read again from each release's wheel METADATA, must be what
provision/data/compat.toml says, and every final release since the table's oldest row must have a row (a new
release on PyPI makes this fail: refresh the matrix). CI cost: ~45-60 s of HTTP range reads, no downloads."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

from provision.compat.refresh import refresh, render_rows

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

MATRIX = Path(__file__).parents[2] / "provision" / "data" / "compat.toml"
TABLES = {"vllm": "vllm", "xformers": "xformers", "flashinfer-python": "flashinfer_pins"}
#: what refresh writes; the shipped rows may carry more (source notes, the overlay's mark)
FIELDS = ("torch", "xformers", "flashinfer", "flashinfer_extra", "torch_range", "torch_extras")


def _facts(row: dict[str, object]) -> dict[str, object]:
    return {k: row[k] for k in FIELDS if k in row}


@pytest.mark.parametrize("package", list(TABLES))
def test_generated_tables_agree_with_the_index(package: str) -> None:
    shipped_rows = tomllib.loads(MATRIX.read_text(encoding="utf-8"))[TABLES[package]]["releases"]
    shipped = {Version(str(r["version"])): _facts(r) for r in shipped_rows}
    oldest = min(shipped)
    live_rows = tomllib.loads(render_rows(package, refresh(package, since=str(oldest))))[TABLES[package]]["releases"]
    live = {Version(str(r["version"])): _facts(r) for r in live_rows}
    differ = [
        f"{v}: matrix {shipped[v]} ≠ metadata {live[v]}" for v in sorted(live) if v in shipped and shipped[v] != live[v]
    ]
    missing = [str(v) for v in sorted(live) if v not in shipped]
    gone = [str(v) for v in sorted(shipped) if v not in live]
    assert not differ, f"{package}: rows disagree with the wheels' METADATA:\n" + "\n".join(differ)
    assert not missing, f"{package}: releases on the index without a row (gpuprov compat refresh): {missing}"
    assert not gone, f"{package}: rows for releases the index no longer serves (yanked?): {gone}"
