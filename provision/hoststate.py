"""Gathering what a tuning plan needs to know about a host, in one step, before planning: the files
and units gpuprov manages, what gpuprov recorded (locked clocks, refused power limits), whether systemd
runs, the installed llama-cpp-python build. The plan itself (:mod:`provision.plan`) does no I/O.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from provision import applystate, roottree, systemd
from provision.plan import MANAGED_FILES, MANAGED_UNITS
from provision.plantypes import FileState, HostState
from provision.profiles.schema import SECTIONS, Profile
from provision.serving.sandbox import read_sandbox_facts
from provision.snapshot import Snapshot


def read_host_state(
    snapshot: Snapshot,
    profile: Profile | None,
    *,
    root: Path = Path("/"),
    directory: Path | None = None,
    python: str,
) -> HostState:
    """The live :class:`HostState` of this host (or of the image tree at ``root``), with what the
    sections of ``profile`` need (:func:`gather_sections`; None: a revert, which has no profile)."""
    files = {}
    for path in MANAGED_FILES:
        p = roottree.resolve(root, path, follow_last=False)  # links as inside the tree: never this machine's
        try:
            item = roottree.describe(p)
            if item["type"] == "symlink":  # what the link shows, followed inside the tree
                item.update(
                    roottree.describe(roottree.resolve(root, path)),
                    type="symlink",
                    link_target=item["link_target"],
                    uid=item["uid"],
                    gid=item["gid"],
                )
        except OSError as exc:
            raise applystate.StateError(f"cannot read {p}: {exc.strerror or exc}") from None
        files[path] = FileState(item["content"], item["mode"], item["link_target"], item["uid"], item["gid"])
    units = {name: systemd.unit_state(name, root=root) for name in MANAGED_UNITS}
    host = HostState(
        known=True,
        files=files,
        units=units,
        locked_clocks_mhz=applystate.recorded_locked_clocks(directory or applystate.state_dir(root)),
        power_limit_refused=applystate.power_limit_refused(directory or applystate.state_dir(root)),
        systemd_running=systemd.running_systemd(root),
        python=python,
        root=str(root),
        image=roottree.is_image(root),
    )
    return host if profile is None else gather_sections(host, snapshot, profile)


def gather_sections(host: HostState, snapshot: Snapshot, profile: Profile) -> HostState:
    """``host`` with what each section of ``profile`` reads before planning (its ``gather`` hook: installed
    vLLM, virtualenvs, the model, compilers...), read under ``host.root``. A host that is not this one
    (``known=False``, a snapshot from elsewhere) is looked at here all the same, as before planning."""
    # the boot unit runs gpuprov: its interpreter's directories (and where its symlinks lead)
    host = replace(host, sandbox=read_sandbox_facts([host.python], [], Path(host.root)))
    for section_type in SECTIONS.values():
        if section_type.gather is not None:
            host = section_type.gather(profile, snapshot, host)
    return host
