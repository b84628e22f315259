"""Write real-format installed distributions (``.dist-info`` with METADATA, RECORD, top_level.txt,
entry_points.txt, INSTALLER) and tiny module files into a site-packages directory, from the TOML
specs in ``envs/``. Each spec row says where its metadata came from.

Used by tests/unit/test_prune_*.py (a bare directory read with importlib.metadata) and
tests/integration/test_prune_*.py (the site-packages of a real virtualenv).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import tomllib
from pathlib import Path

HERE = Path(__file__).parent


def load_spec(name: str) -> list[dict]:
    return tomllib.loads((HERE / "envs" / f"{name}.toml").read_text(encoding="utf-8"))["dist"]


def _record_row(site: Path, rel: str) -> list[str]:
    data = (site / rel).read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [rel, f"sha256={digest}", str(len(data))]


def write_dist(site: Path, dist: dict) -> None:
    name, version = dist["name"], dist["version"]
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    for rel in dist.get("files", []):
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        body = dist.get("module_source", {}).get(rel, f'"""stand-in for {name} {version}: {rel}"""\n')
        pad = int(dist.get("pad_bytes", {}).get(rel, 0))
        path.write_text(body + ("#" * pad + "\n" if pad else ""), encoding="utf-8")
        files.append(rel)
    for script in dist.get("scripts", []):  # installed from the wheel's .data/scripts, as ruff's binary
        rel = f"../../../bin/{script}"
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\necho stand-in\n", encoding="utf-8")
        files.append(rel)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Provides-Extra: {e}" for e in dist.get("provides_extras", [])]
    meta += [f"Requires-Dist: {r}" for r in dist.get("requires", [])]
    (info / "METADATA").write_text("\n".join(meta) + "\n\n", encoding="utf-8")
    (info / "INSTALLER").write_text("gpuprov-tests\n", encoding="utf-8")
    rels = [f"{info.name}/METADATA", f"{info.name}/INSTALLER"]
    if "top_level" in dist:
        (info / "top_level.txt").write_text("\n".join(dist["top_level"]) + "\n", encoding="utf-8")
        rels.append(f"{info.name}/top_level.txt")
    eps = dist.get("entry_points", {})
    if eps:
        text = "".join(f"[{group}]\n" + "".join(f"{line}\n" for line in lines) + "\n" for group, lines in eps.items())
        (info / "entry_points.txt").write_text(text, encoding="utf-8")
        rels.append(f"{info.name}/entry_points.txt")
    if dist.get("no_record"):
        return
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for rel in [*files, *rels]:
        writer.writerow(_record_row(site, rel))
    writer.writerow([f"{info.name}/RECORD", "", ""])
    (info / "RECORD").write_text(buf.getvalue(), encoding="utf-8")


def project_dists(project: str) -> set[str]:
    """The distributions installed in a corpus project's environment (envs/projects.toml)."""
    data = tomllib.loads((HERE / "envs" / "projects.toml").read_text(encoding="utf-8"))
    return set(data["environments"][project])


def build_site(site: Path, spec: str = "corpus", only: set[str] | None = None) -> Path:
    """Write the distributions of ``envs/<spec>.toml`` (those named in ``only``) into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    known = load_spec(spec)
    missing = (only or set()) - {d["name"] for d in known}
    if missing:
        raise ValueError(f"not in envs/{spec}.toml: {sorted(missing)}")
    for dist in known:
        if only is None or dist["name"] in only:
            write_dist(site, dist)
    return site
