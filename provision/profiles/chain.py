"""A profile from its file and the chain it extends: the header checked, a child merged over its parent
section by section (with each section's exclusive groups, tied keys and blocks), the result built and
validated by :mod:`provision.profiles.schema`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from provision.profiles.schema import (
    HEADER_KEYS,
    NAME_RE,
    SCHEMA_VERSION,
    SECTIONS,
    Block,
    Match,
    Profile,
    _mapping,
    _show,
    _text,
    _text_list,
    _Where,
)


def check_header(data: Any, file: str) -> dict[str, Any]:
    """The shape every profile file must have on its own (before ``extends`` is resolved)."""
    where = _Where(file)
    allowed = HEADER_KEYS + tuple(SECTIONS)
    if data is None:
        raise where.error("the file is empty: expected a mapping with keys " + ", ".join(allowed))
    data = _mapping(data, where, allowed)
    if "schema_version" in data and data["schema_version"] != SCHEMA_VERSION:
        raise where["schema_version"].error(
            f"this gpuprov reads profile schema_version {SCHEMA_VERSION}, got {_show(data['schema_version'])}"
        )
    if "extends" in data and data["extends"] is not None:
        ext = data["extends"]
        if not isinstance(ext, str) or not NAME_RE.match(ext):
            raise where["extends"].error(
                f"expected the name of another profile (lowercase letters, digits, . _ -), got {_show(ext)}"
            )
    checked: dict[str, Any] = data
    return checked


def _merge_mapping(
    parent: dict[str, Any],
    child: dict[str, Any],
    exclusive: tuple[tuple[str, ...], ...],
    tied: tuple[str, ...],
    blocks: Mapping[str, Block],
) -> dict[str, Any]:
    merged = dict(parent)
    for group in exclusive:
        if any(child_key in group for child_key in child):
            chosen = {k for k in group if child.get(k) is not None}
            # a parent's key set to null is still its choice (serving: {ollama: } serves Ollama)
            switched = bool(chosen) and chosen != {k for k in group if k in parent}
            for k in (*group, *(tied if switched else ())):
                merged.pop(k, None)
    for k, v in child.items():
        if v is None:
            merged.pop(k, None)
        elif k in blocks and isinstance(v, dict) and isinstance(parent.get(k), dict):
            merged[k] = _merge_mapping(parent[k], v, blocks[k].exclusive, blocks[k].tied, {})
        else:
            merged[k] = v
    return merged


def _switches(parent: dict[str, Any], child: dict[str, Any], key: str) -> bool:
    """Whether ``child`` switches the choice of an exclusive group of section ``key`` (another engine)."""
    section = SECTIONS.get(key)
    mine, theirs = child.get(key), parent.get(key)
    if section is None or not isinstance(mine, dict) or not isinstance(theirs, dict):
        return False
    for group in section.exclusive:
        chosen = {k for k in group if mine.get(k) is not None}
        if chosen and chosen != {k for k in group if k in theirs}:
            return True
    return False


def merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``parent``: sections merge key by key, a key set to null is removed, lists and
    header values are replaced; setting one key of an exclusive group drops the parent's other one
    (and, when that is a switch, the section's keys tied to the choice). A block the child keeps
    (serving.vllm under a parent serving vLLM) merges key by key the same way; a block the child
    switches to (serving.llama_cpp under a parent serving vLLM) is the child's alone, and so is a section
    that follows it (the parent's ``stack`` made vLLM's environment: dropped unless the child sets one)."""
    out = dict(parent)
    for name, dependent in SECTIONS.items():
        if dependent.follows and name not in child and _switches(parent, child, dependent.follows):
            out.pop(name, None)  # the parent's stack was for the parent's server, not the one the child picks
    for key, value in child.items():
        if key == "extends":
            continue
        section = SECTIONS.get(key)
        if section is not None and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_mapping(out[key], value, section.exclusive, section.tied, section.blocks)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def build(name: str, data: dict[str, Any], *, file: str, chain: tuple[str, ...], builtin: bool) -> Profile:
    """Validate a merged profile. ``file`` is named in errors (the most specific file of the chain)."""
    where = _Where(file)
    description = _text(data.get("description", name), where["description"], "a one-line description")
    sources = _text_list(data.get("sources", []), where["sources"], "sources (text)")
    match = Match()
    if data.get("match") is not None:
        mw = where["match"]
        m = _mapping(data["match"], mw, ("gpu_names", "compute_capabilities"))
        names = _text_list(m.get("gpu_names") or [], mw["gpu_names"], "GPU names (NVML names, * wildcards)")
        ccs = _text_list(
            m.get("compute_capabilities") or [], mw["compute_capabilities"], "compute capabilities like 8.9"
        )
        for cc in ccs:
            if not re.fullmatch(r"\d{1,2}\.\d", cc):
                raise mw["compute_capabilities"].error(f"{_show(cc)} is not a compute capability like 8.9")
        match = Match(names, ccs)
    sections = {key: SECTIONS[key].parse(data[key], where[key]) for key in SECTIONS if data.get(key) is not None}
    return Profile(
        name=name,
        description=description.strip(),
        path=file,
        chain=chain,
        match=match,
        sources=sources,
        builtin=builtin,
        sections=sections,
    )
