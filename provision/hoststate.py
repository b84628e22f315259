"""Gathering what a tuning plan needs to know about a host, in one step, before planning: the files
and units gpuprov manages, what gpuprov recorded (locked clocks, refused power limits), whether systemd
runs, the installed llama-cpp-python build. The plan itself (:mod:`provision.plan`) does no I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provision import applystate, roottree, systemd
from provision.llama_build import installed_build
from provision.plan import MANAGED_FILES, MANAGED_UNITS
from provision.plantypes import FileState, HostState


def read_host_state(
    *, root: Path = Path("/"), directory: Path | None = None, python: str, llama_cpp_python: str | None = None
) -> HostState:
    """The live :class:`HostState` of this host (or of the image tree at ``root``).

    ``llama_cpp_python``: the interpreter a profile's ``llama_cpp`` section builds into, whose installed
    build is looked up (a subprocess of that interpreter; only when a profile asks for a build).
    """
    files = {}
    for path in MANAGED_FILES:
        p = roottree.resolve(root, path, follow_last=False)  # links as inside the tree: never this machine's
        try:
            item = roottree.describe(p)
            if item["type"] == "symlink":  # what the link shows, followed inside the tree
                item.update(roottree.describe(roottree.resolve(root, path)), type="symlink",
                            link_target=item["link_target"], uid=item["uid"], gid=item["gid"])  # fmt: skip
        except OSError as exc:
            raise applystate.StateError(f"cannot read {p}: {exc.strerror or exc}") from None
        files[path] = FileState(item["content"], item["mode"], item["link_target"], item["uid"], item["gid"])
    units = {name: systemd.unit_state(name, root=root) for name in MANAGED_UNITS}
    return HostState(
        known=True,
        files=files,
        units=units,
        locked_clocks_mhz=applystate.recorded_locked_clocks(directory or applystate.state_dir(root)),
        power_limit_refused=applystate.power_limit_refused(directory or applystate.state_dir(root)),
        systemd_running=systemd.running_systemd(root),
        python=python,
        root=str(root),
        image=roottree.is_image(root),
        llama_cpp_installed=_installed_llama_cpp(llama_cpp_python),
    )


def _installed_llama_cpp(python: str | None) -> dict[str, Any] | None:
    if not python or not Path(python).is_file():
        return None
    return installed_build(python)
