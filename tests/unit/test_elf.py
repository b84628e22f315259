from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.elf import ElfError, needed_libraries, needed_libraries_of

SYSTEM = [p for p in ("/bin/ls", "/usr/bin/python3", "/usr/lib/x86_64-linux-gnu/libssl.so.3") if Path(p).exists()]


@pytest.mark.skipif(not shutil.which("readelf") or not SYSTEM, reason="binutils readelf not installed")
@pytest.mark.parametrize("path", SYSTEM)
def test_matches_readelf(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    expect = [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]
    assert needed_libraries_of(path) == expect


def test_not_elf(tmp_path):
    p = tmp_path / "x.so"
    p.write_bytes(b"#!/bin/sh\necho hi\n" * 10)
    with pytest.raises(ElfError, match="not an ELF"):
        needed_libraries_of(p)
    with pytest.raises(ElfError, match="empty"):
        (tmp_path / "e.so").write_bytes(b"")
        needed_libraries_of(tmp_path / "e.so")
    with pytest.raises(ElfError):
        needed_libraries_of(tmp_path / "missing.so")


def test_truncated_real_library(tmp_path):
    data = Path(SYSTEM[0]).read_bytes()
    with pytest.raises(ElfError):
        needed_libraries(data[:200])


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash(data):
    with contextlib.suppress(ElfError):
        needed_libraries(b"\x7fELF" + data)


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=4000), st.binary(min_size=1, max_size=8))
def test_corrupted_real_library_never_crashes(offset, junk):
    data = bytearray(Path(SYSTEM[0]).read_bytes())
    offset %= len(data)
    data[offset : offset + len(junk)] = junk
    try:
        names = needed_libraries(bytes(data))
    except ElfError:
        return
    assert all(isinstance(n, str) for n in names)
