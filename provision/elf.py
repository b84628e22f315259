"""The shared libraries an ELF file links against (its DT_NEEDED entries), read without binutils.

Used to verify a build: a CUDA build of llama.cpp's ggml links ``libcudart`` / ``libcublas``.
Malformed input raises :class:`ElfError`, never anything else.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

DT_NEEDED = 1
SHT_DYNAMIC = 6


class ElfError(ValueError):
    pass


def needed_libraries(data: bytes | mmap.mmap) -> list[str]:
    """The DT_NEEDED names of an ELF image, in order."""
    if len(data) < 0x34 or data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    cls, enc = data[4], data[5]
    if cls not in (1, 2) or enc not in (1, 2):
        raise ElfError("unknown ELF class or byte order")
    e = "<" if enc == 1 else ">"
    is64 = cls == 2
    try:
        if is64:
            (shoff,) = struct.unpack_from(e + "Q", data, 0x28)
            shentsize, shnum = struct.unpack_from(e + "HH", data, 0x3A)
        else:
            (shoff,) = struct.unpack_from(e + "I", data, 0x20)
            shentsize, shnum = struct.unpack_from(e + "HH", data, 0x2E)
        if shoff + shnum * shentsize > len(data):
            raise ElfError("section headers extend past the end of the file")
        sections = []
        for i in range(shnum):
            off = shoff + i * shentsize
            if is64:
                _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from(
                    e + "IIQQQQIIQQ", data, off
                )
            else:
                _, sh_type, _, _, sh_offset, sh_size, sh_link, _, _, sh_entsize = struct.unpack_from(
                    e + "IIIIIIIIII", data, off
                )
            sections.append((sh_type, sh_offset, sh_size, sh_link, sh_entsize))
        dynamic = next((s for s in sections if s[0] == SHT_DYNAMIC), None)
        if dynamic is None:
            return []  # statically linked
        _, dyn_off, dyn_size, link, entsize = dynamic
        if link >= len(sections):
            raise ElfError("dynamic section links to a missing string table")
        _, str_off, str_size, _, _ = sections[link]
        if dyn_off + dyn_size > len(data) or str_off + str_size > len(data):
            raise ElfError("section extends past the end of the file")
        entsize = entsize or (16 if is64 else 8)
        fmt = e + ("qQ" if is64 else "iI")
        names = []
        for pos in range(dyn_off, dyn_off + dyn_size - entsize + 1, entsize):
            tag, val = struct.unpack_from(fmt, data, pos)
            if tag == 0:
                break
            if tag == DT_NEEDED:
                if val >= str_size:
                    raise ElfError("DT_NEEDED points outside the string table")
                start = str_off + val
                end = data.find(b"\x00", start, str_off + str_size)
                if end < 0:
                    raise ElfError("unterminated library name")
                names.append(data[start:end].decode("utf-8", "replace"))
        return names
    except (struct.error, OverflowError, ValueError) as exc:
        if isinstance(exc, ElfError):
            raise
        raise ElfError(f"truncated or corrupt ELF file ({exc})") from None


def needed_libraries_of(path: str | Path) -> list[str]:
    """Maps the file instead of reading it: CUDA libraries are hundreds of MB of kernels."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            if p.stat().st_size == 0:
                raise ElfError(f"{p}: empty file")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return needed_libraries(mm)
    except OSError as exc:
        raise ElfError(f"{p}: {exc.strerror or exc}") from None
