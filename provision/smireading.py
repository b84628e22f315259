"""Readings of ``nvidia-smi -q`` (text) and ``nvidia-smi -q -x`` (XML) turned into a :class:`Snapshot`.

A user who cannot run gpuprov on a host (or who asks for help) can paste what ``nvidia-smi`` printed there:
``gpuprov doctor --from gpu.xml`` (:mod:`provision.snapshotfile` tells a reading from a snapshot file). One
module per step: :mod:`provision.smitext` and :mod:`provision.smixml` parse each form into the same entries
(:mod:`provision.smientries`); :mod:`provision.smigpu` takes each GPU field from the entry with the meaning
the probe gives it from NVML; this module adds the driver, the note and the checks every snapshot file
goes through.

A reading has no Python environment, CUDA toolkit, engines or host facts (kernel, distro, CPU, RAM): they
are unknown, and the snapshot's note says so. A paste with text around the reading (a shell prompt,
markdown fences) or cut off part-way is read as far as it goes, with a warning in the note.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from provision import __version__
from provision.errors import SnapshotError
from provision.gpuarch import architecture_for_cc
from provision.gpus import lookup_gpu
from provision.smientries import ParsedLog, value_and_reason
from provision.smigpu import fill_gpu
from provision.smitext import parse_text
from provision.smixml import parse_xml
from provision.snapshot import DriverInfo, GpuInfo, HostInfo, NvmlStatus, PythonEnv, Snapshot
from provision.versions import is_driver_version

#: what no reading holds, said in every snapshot read from one
CANNOT_KNOW = (
    "compute capability (taken from gpuprov's GPU catalog by name)",
    "the Python stack (torch, vLLM, llama-cpp-python)",
    "CUDA toolkits and inference engines",
    "the host (kernel, distro, CPU, RAM, systemd, laptop chassis)",
    "the kernel module's flavour and NVML's library version",
)


@dataclass
class SmiReading:
    """A reading turned into a snapshot, with where each GPU field came from and what was not in it."""

    snapshot: Snapshot
    #: "nvidia-smi -q" or "nvidia-smi -q -x"
    form: str
    #: the XML schema named by its DOCTYPE (v11, v12, v13), None for text or when there was none
    schema: str | None
    #: per GPU index: field → where it came from (the reading's entry, "catalog", "inferred: ...")
    origins: dict[int, dict[str, str]]
    warnings: list[str]


def detect(text: str) -> str | None:
    """ "xml" or "text" when ``text`` holds an nvidia-smi reading (anywhere in it), else None."""
    head = text[:1_000_000]
    if "<nvidia_smi_log" in head:
        return "xml"
    if "NVSMI LOG" in head or re.search(r"^[ \t]*Attached GPUs[ \t]*:", head, re.MULTILINE):
        return "text"
    return None


def read(text: str, *, source: str = "") -> SmiReading:
    """The reading in ``text`` (XML or text form). Raises :class:`SnapshotError` when there is none."""
    kind = detect(text)
    if kind == "xml":
        return read_xml(text, source=source)
    if kind == "text":
        return read_text(text, source=source)
    raise SnapshotError("not an nvidia-smi reading (no <nvidia_smi_log> and no 'NVSMI LOG' / 'Attached GPUs')")


def read_text(text: str, *, source: str = "") -> SmiReading:
    """An ``nvidia-smi -q`` reading (with or without text around it, whole or cut off)."""
    return _reading(parse_text(text), source=source)


def read_xml(text: str, *, source: str = "") -> SmiReading:
    """An ``nvidia-smi -q -x`` reading of any schema (v11 to v13), whole or cut off, chatter around it."""
    return _reading(parse_xml(text), source=source)


def _version(value: str | None, valid: re.Pattern[str] | None = None) -> str | None:
    given, _ = value_and_reason(value)
    if given is None:
        return None
    if valid is None:
        return given if is_driver_version(given) else None
    return given if valid.fullmatch(given) else None


_CUDA = re.compile(r"[0-9]{1,2}\.[0-9]{1,2}")


def _created_at(value: str | None) -> str:
    given, _ = value_and_reason(value)
    if given is None:
        return ""
    try:
        stamp = _dt.datetime.strptime(" ".join(given.split()), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        return ""
    return stamp.isoformat()


def _reading(log: ParsedLog, *, source: str) -> SmiReading:
    top, form, schema, warnings = log.top, log.form, log.schema, log.warnings
    driver = DriverInfo()
    raw_driver, _ = top.text(("driver_version",))
    driver.driver_version = _version(raw_driver)
    if raw_driver is not None and driver.driver_version is None and value_and_reason(raw_driver)[0] is not None:
        warnings.append("the driver version is not one (e.g. 560.35.03): left unknown")
    raw_cuda, _ = top.text(("cuda_version",))
    driver.cuda_driver_version = _version(raw_cuda, _CUDA)
    if driver.cuda_driver_version is None:
        driver.unavailable["cuda_driver_version"] = (
            "not_supported" if value_and_reason(raw_cuda)[1] else "not in the reading"
        )
    driver.unavailable["nvml_version"] = "not in a reading"
    gpus: list[GpuInfo] = []
    origins: dict[int, dict[str, str]] = {}
    for index, (bus_id, node) in enumerate(log.gpus):
        gpu, where = fill_gpu(index, bus_id, node)
        gpus.append(gpu)
        origins[index] = where
    attached, _ = top.text(("attached_gpus",))
    if attached is not None and attached.strip().isdigit() and int(attached) != len(gpus):
        warnings.append(f"the reading says {int(attached)} GPU(s) attached, {len(gpus)} are in it")
    uuids = [g.uuid for g in gpus if g.uuid]
    if len(set(uuids)) != len(uuids):
        warnings.append("several GPUs carry the same UUID (an edited reading?): GPUs are told apart by index")
        for gpu in gpus:
            gpu.uuid = None
            gpu.unavailable["uuid"] = "the same UUID on several GPUs of the reading"
    if gpus:
        driver.nvml = NvmlStatus(True, "ok", "")
    else:
        driver.nvml = NvmlStatus(False, "no_gpu", f"no GPU in the {form} reading")
    laptop = any((spec := lookup_gpu(g.name)) is not None and spec.laptop for g in gpus)
    what = f"{form}" + (f" (XML {schema})" if schema else "")
    note = f"read from {what}" + (f" {source}" if source else "") + ": GPUs, driver and CUDA version as printed"
    note += "; not in a reading: " + "; ".join(CANNOT_KNOW)
    refused = [str(i) for i, where in origins.items() if "set_power_limit" in where]
    if refused:
        note += (
            f"; inferred: GPU {', '.join(refused)} refuses power-limit changes (its requested limit is N/A while the "
            "enforced one reads, as on laptops whose driver refuses them)"
        )
    if warnings:
        note += ". Warning: " + "; ".join(warnings)
    snap = Snapshot(
        origin="recorded",
        note=note,
        created_at=_created_at(top.text(("timestamp",))[0]),
        gpuprov_version=__version__,
        host=HostInfo(laptop=True if laptop else None),
        driver=driver,
        gpus=gpus,
        python=PythonEnv(),  # unknown, not broken: the note says a reading has no Python stack
    )
    for gpu in gpus:
        if gpu.architecture is None and gpu.compute_capability is not None:
            gpu.architecture = architecture_for_cc(gpu.compute_capability)
    # through the same checks as a snapshot file: bounded texts, control characters out, versions checked
    snap = Snapshot.from_dict(snap.to_dict())
    return SmiReading(snapshot=snap, form=form, schema=schema, origins=origins, warnings=warnings)
