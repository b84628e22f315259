"""prune's collector (``pyenv.collect_distributions``) reads each METADATA once: what it reports as
version and requirements is what importlib.metadata's own API answers, for every distribution of
gpuprov's environment and for an egg (``requires.txt``, no ``Requires-Dist``)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from provision import pyenv


def _api_view(paths: list[str] | None = None) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for dist in metadata.distributions(**({"path": paths} if paths is not None else {})):
        name = dist.metadata["Name"]
        if name and pyenv._normalise(name) not in out:
            out[pyenv._normalise(name)] = {"version": dist.version, "requires": list(dist.requires or [])}
    return out


def _collected(paths: list[str] | None = None) -> dict[str, dict[str, object]]:
    dists = pyenv.collect_distributions(paths)["distributions"]
    return {k: {"version": d["version"], "requires": d["requires"]} for k, d in dists.items()}


def test_versions_and_requirements_are_importlib_metadata_s_own_answers() -> None:
    expected = _api_view()
    assert len(expected) > 20
    assert _collected() == expected


def test_egg_requirements_and_a_dist_without_any(tmp_path: Path) -> None:
    egg = tmp_path / "legacy-1.0-py3.11.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: legacy\nVersion: 1.0\n")
    (egg / "requires.txt").write_text("six>=1.0\n\n[socks]\nPySocks\n")
    bare = tmp_path / "bare-2.0.dist-info"
    bare.mkdir()
    (bare / "METADATA").write_text("Metadata-Version: 2.1\nName: bare\nVersion: 2.0\n")
    (bare / "RECORD").write_text("bare.py,,\nbare-2.0.dist-info/METADATA,,\n")
    got = _collected([str(tmp_path)])
    assert got == _api_view([str(tmp_path)])
    assert got["legacy"]["requires"] == ["six>=1.0", 'PySocks; extra == "socks"']
    assert got["bare"] == {"version": "2.0", "requires": []}
