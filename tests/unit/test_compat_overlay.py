"""compat refresh --user: an overlay read from a real HTTP index (PEP 691 JSON + PEP 658 metadata, served locally),
read on top of the shipped matrix; staleness said by compat check; offline-safe (an unreachable index keeps the
overlay as it was)."""

from __future__ import annotations

import datetime
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.compat.matrix import load_matrix
from provision.compat.overlay import overlay_path, read_overlay
from provision.compat.target import Target, apply_overrides
from provision.compat.verdict import check

DATA = Path(__file__).parent.parent / "data" / "metadata"

_META = "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires}"
#: an index one release ahead of the shipped matrix: vLLM 0.35.0 (torch 2.15.0, flashinfer-python 0.7.5),
#: flashinfer-python 0.7.5 (torch>=2.9 only under [sm107]); plus the shipped newest, which must not be re-added
RELEASES = {
    "vllm": {
        "vllm-0.34.0-cp38-abi3-manylinux_2_28_x86_64.whl": (DATA / "vllm-0.34.0.METADATA").read_text(encoding="utf-8"),
        "vllm-0.35.0-cp38-abi3-manylinux_2_28_x86_64.whl": _META.format(
            name="vllm",
            version="0.35.0",
            requires="Requires-Dist: torch==2.15.0\nRequires-Dist: flashinfer-python==0.7.5\n",
        ),
    },
    "flashinfer-python": {
        "flashinfer_python-0.7.4-py3-none-any.whl": (DATA / "flashinfer_python-0.7.4.METADATA").read_text(
            encoding="utf-8"
        ),
        "flashinfer_python-0.7.5-py3-none-any.whl": _META.format(
            name="flashinfer-python",
            version="0.7.5",
            requires='Requires-Dist: torch\nRequires-Dist: torch>=2.9; extra == "sm107"\n',
        ),
    },
    "xformers": {},
}


class _Index(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        if len(parts) == 2 and parts[0] == "simple" and parts[1] in RELEASES:
            files = [{"filename": f, "url": f"{base}/files/{f}", "core-metadata": True} for f in RELEASES[parts[1]]]
            self._send(json.dumps({"files": files}).encode(), "application/vnd.pypi.simple.v1+json")
            return
        if len(parts) == 2 and parts[0] == "files" and parts[1].endswith(".metadata"):
            name = parts[1].removesuffix(".metadata")
            for files in RELEASES.values():
                if name in files:
                    self._send(files[name].encode(), "text/plain")
                    return
        self.send_error(404)

    def _send(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def index() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


def _gpuprov(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "GPUPROV_COMPAT_OVERLAY"} | env
    return subprocess.run([sys.executable, "-m", "provision", *args], capture_output=True, text=True, env=full)


def test_overlay_path_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GPUPROV_COMPAT_OVERLAY")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert overlay_path() == tmp_path / "gpuprov" / "compat-overlay.toml"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # the XDG spec: relative paths are ignored
    assert overlay_path() == Path.home() / ".cache" / "gpuprov" / "compat-overlay.toml"
    monkeypatch.setenv("GPUPROV_COMPAT_OVERLAY", "none")
    assert overlay_path() is None


def test_refresh_user_writes_an_overlay_the_check_reads(index: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    what_if = ["compat", "check", "--gpu", "RTX 4090", "--driver", "580.65.06", "--with", "vllm==0.35.0"]
    what_if += ["--with", "torch==2.15.0", "--with", "flashinfer-python==0.7.5", "--json"]
    before = _gpuprov(*what_if, env=env)
    assert before.returncode == 3, before.stderr
    report = json.loads(before.stdout)
    assert "vllm 0.35.0 is newer than the matrix (its newest vllm: 0.34.0" in report["stale"][0]
    assert any("compat refresh --user" in p["fix"] for p in report["problems"] if p["kind"] == "vllm_unknown")

    proc = _gpuprov("compat", "refresh", "--user", "--index", index, env=env)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "gpuprov" / "compat-overlay.toml"
    assert f"wrote {path}: newer than the shipped matrix: vllm 0.35.0, flashinfer-python 0.7.5" in proc.stdout
    overlay = read_overlay(path)
    assert overlay is not None and overlay.rows == 2 and overlay.index == index

    after = _gpuprov(*what_if, env=env)
    report = json.loads(after.stdout)
    assert after.returncode == 0, report
    assert report["stale"] == [] and report["matrix"]["overlay"] == str(path)
    assert "vllm 0.35.0 ↔ torch 2.15.0" in report["checked"]
    # the overlay's flashinfer extra is judged by it too
    sm107 = ["compat", "check", "--with", "torch==2.8.0", "--with", "flashinfer-python[sm107]==0.7.5", "--json"]
    report = json.loads(_gpuprov(*sm107, env=env).stdout)
    assert [p["kind"] for p in report["problems"]] == ["flashinfer_torch"], report

    # in the library: vLLM 0.35.0's build facts are the newest range's, and the source says they are assumed
    monkeypatch.setenv("GPUPROV_COMPAT_OVERLAY", str(path))
    m = load_matrix()
    rel = m.vllm("0.35.0")
    assert rel is not None and rel.cuda == "13.0" and "assumed for 0.35.0" in rel.build_source
    assert "user overlay" in rel.source and m.coverage["vllm"].endswith("your overlay up to 0.35.0")
    assert m.vllm("0.34.0").source.startswith("PyPI wheel METADATA")  # shipped rows are not replaced
    plan_target = apply_overrides(Target(), gpu="RTX 4090", driver="580.65.06")
    from provision.compat.plan import plan

    pins = {p.name: p.version for p in plan(plan_target, "vllm").pins}
    assert pins == {"vllm": "0.35.0", "torch": "2.15.0", "flashinfer-python": "0.7.5"}


def test_refresh_user_without_network_keeps_the_overlay(index: str, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    assert _gpuprov("compat", "refresh", "--user", "--index", index, env=env).returncode == 0
    path = tmp_path / "gpuprov" / "compat-overlay.toml"
    kept = path.read_bytes()
    # an address nothing listens on: the network is cut
    proc = _gpuprov("compat", "refresh", "--user", "--index", "http://127.0.0.1:9/simple", env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("gpuprov: cannot read the index (cannot fetch http://127.0.0.1:9/simple/vllm/")
    assert lines[-1].endswith(f"kept your overlay {path} (index read {datetime.date.today()}, 2 row(s))")
    assert path.read_bytes() == kept
    # and with no overlay at all
    other = {"XDG_CACHE_HOME": str(tmp_path / "empty")}
    proc = _gpuprov("compat", "refresh", "--user", "--index", "http://127.0.0.1:9/simple", env=other)
    assert proc.returncode == 1 and "no overlay: the shipped matrix is used as it is" in proc.stderr
    assert not (tmp_path / "empty" / "gpuprov").exists()


def test_a_broken_overlay_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gpuprov" / "compat-overlay.toml"
    path.parent.mkdir()
    path.write_text("refreshed = 'yesterday'\n", encoding="utf-8")
    proc = _gpuprov("compat", "check", "--with", "vllm==0.10.1", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"gpuprov: error: {path} is not a gpuprov compat overlay: remove it, or write it again with gpuprov compat "
        "refresh --user"
    ]


def test_the_matrix_says_how_old_it_is() -> None:
    m = load_matrix()
    assert m.refreshed is not None
    later = datetime.date.fromisoformat(m.refreshed) + datetime.timedelta(days=40)
    report = check(apply_overrides(Target(), packages=["vllm==9.0.0"]), today=later)
    assert report.matrix == {"refreshed": m.refreshed, "age_days": 40, "overlay": None}
    assert report.stale == [
        f"vllm 9.0.0 is newer than the matrix (its newest vllm: {m.newest('vllm')}; index read "
        f"{m.refreshed}, 40 day(s) ago)"
    ]
    # an old version the matrix lacks is unknown, but not stale
    assert check(apply_overrides(Target(), packages=["vllm==0.5.0"])).stale == []


def _toml(value: object) -> str:
    """A TOML inline value (strings as JSON strings, which TOML reads the same)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value, ensure_ascii=False)


_VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["2.8.0", ">=2.8", "0.35.0", "1!2.0", "==", "banana"]),
    st.integers(),
    st.booleans(),
    st.dictionaries(st.sampled_from(["sm107", "b12x"]), st.one_of(st.text(max_size=6), st.integers()), max_size=2),
)
_KEYS = st.sampled_from(
    ["version", "torch", "xformers", "flashinfer", "flashinfer_extra", "torch_range", "torch_extras", "source", "x"]
)


@settings(max_examples=150, deadline=None)
@given(
    table=st.sampled_from(["vllm", "xformers", "flashinfer_pins"]),
    rows=st.lists(st.dictionaries(_KEYS, _VALUES, max_size=6), max_size=3),
    refreshed=st.sampled_from(["2026-12-04", "yesterday", ""]),
)
def test_any_overlay_is_read_into_the_matrix_or_refused_in_one_line(table, rows, refreshed) -> None:  # type: ignore[no-untyped-def]
    """Whatever a hand-edited or truncated overlay holds, the matrix reads it or OverlayError names the file."""
    import tempfile

    from provision.compat.matrix import Matrix, _shipped
    from provision.compat.overlay import OverlayError, merge

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compat-overlay.toml"
        body = ",\n".join("  " + _toml(row) for row in rows)
        path.write_text(f'refreshed = "{refreshed}"\n[{table}]\nreleases = [\n{body}\n]\n', encoding="utf-8")
        try:
            overlay = read_overlay(path)
        except OverlayError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            return
        assert overlay is not None
        m = Matrix(merge(_shipped(), overlay))
        for version in m.vllm_releases:
            report = check(apply_overrides(Target(), packages=[f"vllm=={version}"]), m)
            assert report.verdict in ("ok", "incompatible", "unknown")


def test_check_prints_how_old_the_matrix_is(tmp_path: Path) -> None:
    m = load_matrix()
    proc = _gpuprov("compat", "check", "--with", "vllm==9.0.0", env={"GPUPROV_COMPAT_OVERLAY": "none"})
    assert proc.returncode == 3
    out = " ".join(proc.stdout.split())
    assert f"vllm 9.0.0 is newer than the matrix (its newest vllm: {m.newest('vllm')}; index read {m.refreshed}" in out
    assert f"matrix: index read {m.refreshed} (" in out
