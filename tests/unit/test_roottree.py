"""Paths inside an image tree (links followed as inside chroot, never out of the tree) and what a file
there is (type, link target, owner, group, mode) for an exact revert."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision import roottree
from provision.roottree import RootPathError


def _inside(path: Path, root: Path) -> bool:
    return path == root.resolve() or root.resolve() in path.parents


def test_absolute_link_means_the_images_directory(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "usr/lib/modprobe.d").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/modprobe.d").symlink_to("/usr/lib/modprobe.d")
    assert roottree.resolve(root, "/etc/modprobe.d/x.conf") == root / "usr/lib/modprobe.d/x.conf"


def test_a_link_to_the_same_path_on_the_host_is_a_loop_refused(tmp_path: Path) -> None:
    """The issue's case: img/etc/modprobe.d -> /etc/modprobe.d (meant the build machine's)."""
    root = tmp_path / "img"
    (root / "etc").mkdir(parents=True)
    (root / "etc/modprobe.d").symlink_to("/etc/modprobe.d")
    with pytest.raises(RootPathError, match="too many levels of symbolic links"):
        roottree.resolve(root, "/etc/modprobe.d/gpuprov.conf")


def test_dotdot_stops_at_the_root(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "etc").mkdir(parents=True)
    (root / "etc/escape").symlink_to("../../../../../../tmp")
    assert roottree.resolve(root, "/etc/escape/x") == root / "tmp/x"
    assert roottree.resolve(root, "/../../etc/x") == root / "etc/x"


def test_the_last_link_is_kept_when_asked(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "etc").mkdir(parents=True)
    (root / "etc/unit").symlink_to("/lib/unit")
    assert roottree.resolve(root, "/etc/unit", follow_last=False) == root / "etc/unit"
    assert roottree.resolve(root, "/etc/unit") == root / "lib/unit"


def test_root_slash_is_the_plain_path() -> None:
    assert roottree.resolve(Path("/"), "/nonexistent-gpuprov/a/b") == Path("/nonexistent-gpuprov/a/b")


_NAMES = st.sampled_from(["a", "b", "etc", "..", "."])
_TARGETS = (
    st.lists(_NAMES, min_size=1, max_size=5)
    .map("/".join)
    .flatmap(lambda rel: st.sampled_from([rel, "/" + rel, "/" + "../" * 6 + rel]))
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    links=st.dictionaries(st.sampled_from(["a", "b", "etc", "a/b", "etc/a"]), _TARGETS, max_size=4),
    path=st.lists(_NAMES, min_size=1, max_size=6).map(lambda p: "/" + "/".join(p)),
)
def test_resolution_never_leaves_the_root(tmp_path_factory: pytest.TempPathFactory, links: dict, path: str) -> None:
    """Whatever links an image holds (absolute, relative, climbing with ..), a path resolves inside it, or
    is refused as a loop."""
    root = tmp_path_factory.mktemp("img")
    for name, target in links.items():
        link = root / name
        if link.parent.is_symlink() or not link.parent.exists():
            continue
        if not link.exists() and not link.is_symlink():
            link.symlink_to(target)
    for follow_last in (True, False):
        try:
            resolved = roottree.resolve(root, path, follow_last=follow_last)
        except RootPathError:
            continue
        assert _inside(resolved, root), (links, path, resolved)


def test_describe_file_link_absent(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x=1\n")
    f.chmod(0o640)
    link = tmp_path / "l"
    link.symlink_to("/nowhere")
    assert roottree.describe(f) == {
        "type": "file",
        "content": "x=1\n",
        "mode": "0640",
        "uid": os.getuid(),
        "gid": os.getgid(),
        "link_target": None,
    }
    described = roottree.describe(link)
    assert (described["type"], described["link_target"], described["content"]) == ("symlink", "/nowhere", None)
    assert roottree.describe(tmp_path / "none")["type"] == "absent"
    assert roottree.describe(tmp_path)["type"] == "other"


def test_records_without_a_type_revert_as_before() -> None:
    assert roottree.record_type({"content": "x", "mode": "0644"}) == "file"
    assert roottree.record_type({"content": None, "mode": None}) == "absent"
    assert roottree.record_type({"type": "symlink", "content": None, "link_target": "/x"}) == "symlink"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a link to another owner needs root")
def test_place_symlink_replaces_a_file_with_owner(tmp_path: Path) -> None:
    f = tmp_path / "unit"
    f.write_text("written by gpuprov\n")
    roottree.place_symlink(f, "/lib/systemd/system/x.service", uid=65534, gid=65534)
    assert os.readlink(f) == "/lib/systemd/system/x.service"
    assert (f.lstat().st_uid, f.lstat().st_gid) == (65534, 65534)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unit"]  # no temporary left


def test_image_is_any_root_but_the_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(roottree.REPLAY_ROOT_ENV, raising=False)
    assert roottree.is_image(tmp_path) and not roottree.is_image(Path("/"))
    # with a replayed GPU, the sandbox that stands for the replayed host's / is that host
    monkeypatch.setenv(roottree.REPLAY_ROOT_ENV, str(tmp_path))
    monkeypatch.delenv("GPUPROV_NVML_REPLAY", raising=False)
    assert roottree.is_image(tmp_path)  # not without a replay: a real GPU is never the sandbox's
    monkeypatch.setenv("GPUPROV_NVML_REPLAY", str(tmp_path / "gpu.json"))
    assert not roottree.is_image(tmp_path) and not roottree.is_image(Path("/"))
    assert roottree.is_image(tmp_path / "img")
