"""The snapshot: everything gpuprov knows about a host, as plain dataclasses.

The probe (:mod:`provision.probe`) is the only producer of live snapshots. Everything else
(diagnosis, compatibility, plans) takes a :class:`Snapshot` and stays a pure function of it, so any
check can be replayed from a file a user sent (``gpuprov doctor --save`` / ``--from``).

A field NVML could not give is ``None``, and the reason (``not_supported``, ``no_permission``, or
the NVML error text) is kept in the owning object's ``unavailable`` mapping: "not supported" is a
fact about the GPU, never a crash and never silently lost.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import SnapshotError
from provision.typedjson import build, shown
from provision.versions import is_driver_version

SCHEMA_VERSION = 1

#: a snapshot file is tens of KiB: a larger one is not one (the bounds on what it holds: provision.typedjson)
MAX_FILE_BYTES = 16 * 1024 * 1024

#: Where a snapshot came from: ``live`` (probed just now), ``recorded`` (saved by ``doctor --save``
#: on a real machine, or read from its ``nvidia-smi -q`` output), ``constructed`` (written by hand from
#: published specs, for tests), ``published`` (from a reading someone published; the note gives the address).
ORIGINS = ("live", "recorded", "constructed", "published")


@dataclass
class NvmlStatus:
    """Whether NVML started, and if not, why (classified)."""

    ok: bool
    #: one of: ok, library_not_found, driver_not_loaded, version_mismatch, no_permission,
    #: no_gpu, unknown
    kind: str = "ok"
    message: str = ""


@dataclass
class ServerInfo:
    """An inference server unit gpuprov wrote (read by provision.serving.installed_servers)."""

    unit: str
    engine: str
    #: the address it listens on
    host: str | None = None
    port: int | None = None
    api_key: bool = False
    #: the engine the unit runs is installed (Ollama: its binary or its own ollama.service, which gpuprov's
    #: drop-in extends); None: not looked at (gpuprov's own vLLM / llama.cpp units; older snapshots)
    engine_installed: bool | None = None


@dataclass
class HostInfo:
    hostname: str | None = None
    kernel: str | None = None
    distro: str | None = None
    cpu_model: str | None = None
    cpu_cores: int | None = None
    ram_mib: int | None = None
    is_root: bool = False
    systemd_pid1: bool = False
    #: a graphical session seems to be running (X/Wayland process, or DISPLAY set)
    graphical_session: bool = False
    #: DMI chassis type says portable (laptop, notebook, convertible...)
    laptop: bool | None = None
    #: the inference servers gpuprov set up here (serving units and Ollama drop-in)
    servers: list[ServerInfo] = field(default_factory=list)


@dataclass
class DriverInfo:
    nvml: NvmlStatus = field(default_factory=lambda: NvmlStatus(ok=False, kind="unknown"))
    #: kernel module version from /proc/driver/nvidia/version (present even when NVML fails)
    kernel_module_version: str | None = None
    #: "open" or "proprietary", from /proc/driver/nvidia/version
    kernel_module_flavor: str | None = None
    #: userspace libnvidia-ml.so version (from the library file name), for mismatch diagnosis
    nvml_library_version: str | None = None
    driver_version: str | None = None
    nvml_version: str | None = None
    #: the newest CUDA the driver supports, "13.0"
    cuda_driver_version: str | None = None
    persistenced_running: bool = False
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class GpuInfo:
    index: int
    name: str
    uuid: str | None = None
    serial: str | None = None
    pci_bus_id: str | None = None
    #: "9.0"
    compute_capability: str | None = None
    architecture: str | None = None
    vram_total_mib: int | None = None
    vram_used_mib: int | None = None
    vram_free_mib: int | None = None
    vram_reserved_mib: int | None = None
    power_limit_w: float | None = None
    power_default_limit_w: float | None = None
    power_min_limit_w: float | None = None
    power_max_limit_w: float | None = None
    power_enforced_limit_w: float | None = None
    power_draw_w: float | None = None
    persistence_mode: bool | None = None
    #: 0 for P0 ... 15; None when unknown
    performance_state: int | None = None
    temperature_c: int | None = None
    temperature_slowdown_c: int | None = None
    temperature_shutdown_c: int | None = None
    clock_event_reasons_mask: int | None = None
    clock_event_reasons: list[str] = field(default_factory=list)
    max_sm_clock_mhz: int | None = None
    max_memory_clock_mhz: int | None = None
    pcie_generation_current: int | None = None
    pcie_generation_max: int | None = None
    pcie_width_current: int | None = None
    pcie_width_max: int | None = None
    ecc_enabled: bool | None = None
    mig_enabled: bool | None = None
    #: default, exclusive_process, prohibited
    compute_mode: str | None = None
    display_active: bool | None = None
    #: GPU busy percentage over NVML's last sample period; a moment's reading, filled by
    #: gpuwatch.GpuSampler (the full probe leaves it None)
    utilization_gpu_pct: int | None = None
    #: current SM and memory clocks; moment's readings like utilisation (gpuwatch.GpuSampler with detail)
    sm_clock_mhz: int | None = None
    memory_clock_mhz: int | None = None
    #: degrees left before the GPU slows down (NVML's margin temperature, nvidia-smi's "T.Limit Temp"): what
    #: GPUs that hide the slowdown threshold report instead (a moment's reading, GpuSampler with detail)
    temperature_margin_c: int | None = None
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class CudaToolkit:
    nvcc: str
    version: str | None
    #: how it was found: PATH, CUDA_HOME, CUDA_PATH, /usr/local/cuda-12.4 ...
    found_via: list[str] = field(default_factory=list)


@dataclass
class PackageInfo:
    name: str
    version: str
    #: "cu128" from a local version tag like 2.7.1+cu128, when there is one
    cuda_variant: str | None = None


@dataclass
class PythonEnv:
    interpreter: str | None = None
    python_version: str | None = None
    #: keyed by normalised distribution name (PEP 503)
    packages: dict[str, PackageInfo] = field(default_factory=dict)
    #: torch/version.py's ``cuda`` (None for a CPU build, missing file: no torch)
    torch_cuda: str | None = None
    torch_hip: str | None = None
    #: llama-cpp-python's shared libraries link CUDA (None when not installed / unknown)
    llama_cpp_cuda: bool | None = None
    #: distributions that install a top-level ``pynvml`` module (more than one: they clobber)
    pynvml_providers: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Engine:
    name: str
    path: str
    version: str | None = None


@dataclass
class Snapshot:
    schema_version: int = SCHEMA_VERSION
    origin: str = "live"
    #: free text: which machine a recorded/constructed snapshot describes and where its numbers come from
    note: str = ""
    created_at: str = ""
    gpuprov_version: str = ""
    host: HostInfo = field(default_factory=HostInfo)
    driver: DriverInfo = field(default_factory=DriverInfo)
    gpus: list[GpuInfo] = field(default_factory=list)
    cuda_toolkits: list[CudaToolkit] = field(default_factory=list)
    python: PythonEnv = field(default_factory=PythonEnv)
    engines: list[Engine] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any) -> Snapshot:
        if not isinstance(data, dict):
            raise SnapshotError("a snapshot must be a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SnapshotError(
                f"snapshot schema_version is {shown(version)}, this gpuprov reads {SCHEMA_VERSION}: "
                "record it again with this version (gpuprov doctor --save FILE)"
            )
        snap = build(cls, data, "snapshot")
        snap.env = masked_env(snap.env)
        if snap.origin not in ORIGINS:
            raise SnapshotError(f"snapshot origin {shown(snap.origin)} is not one of {', '.join(ORIGINS)}")
        for gpu in snap.gpus:
            cc = gpu.compute_capability
            if cc is not None and not _CC.fullmatch(cc):
                raise SnapshotError(
                    f"gpus[{gpu.index}].compute_capability: {shown(cc)} is not a compute capability "
                    "(MAJOR.MINOR, e.g. 8.9)"
                )
        d = snap.driver
        for name in ("driver_version", "kernel_module_version", "nvml_library_version"):
            value = getattr(d, name)
            if value is not None and not is_driver_version(value):
                raise SnapshotError(f"driver.{name}: {shown(value)} is not a driver version (e.g. 560.35.03 or 570)")
        if d.cuda_driver_version is not None and not _CUDA.fullmatch(d.cuda_driver_version):
            raise SnapshotError(
                f"driver.cuda_driver_version: {shown(d.cuda_driver_version)} is not a CUDA version (e.g. 12.8)"
            )
        return snap

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        """A snapshot file (``doctor --save``). A ``--from FILE`` may also be an nvidia-smi reading: that is
        :func:`provision.snapshotfile.load`."""
        p = Path(path)
        return cls.from_json(read_file_text(p), p)

    @classmethod
    def from_json(cls, text: str, path: Path) -> Snapshot:
        """The snapshot in ``text``, read from ``path`` (named in every error)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SnapshotError(f"{path}: not valid JSON (line {exc.lineno}): is it truncated?") from None
        except RecursionError:
            raise SnapshotError(f"{path}: JSON nested too deeply: not a gpuprov snapshot") from None
        except ValueError:  # an integer of more than 4300 digits
            raise SnapshotError(f"{path}: a number too long for any snapshot field: not a gpuprov snapshot") from None
        try:
            return cls.from_dict(data)
        except SnapshotError as exc:
            raise SnapshotError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def redacted(self, *, user: str | None = None) -> Snapshot:
        """A copy without what identifies the machine or its user: hostname, GPU UUIDs and serials, and in
        every text (environment, paths, notes...) GPU UUIDs, home-directory names, the hostname and the
        name of ``user`` (default: whoever runs gpuprov). Secrets in the environment are masked in every
        snapshot already (:func:`masked_env`)."""
        if user is None:
            try:
                user = getpass.getuser()
            except (OSError, KeyError):  # no user name for this uid (a container's numeric user)
                user = None
        #: a name as a word of its own: "alice" in /srv/alice/venv or alice@host, not in "malice"
        names = [
            (re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.\w)"), stand_in)
            for name, stand_in in ((user, "USER"), (self.host.hostname, "HOST"))
            if name and name.strip() and name != "root"  # root names nobody
        ]

        def scrub(value: Any) -> Any:
            if isinstance(value, str):
                text = _HOME.sub(r"\1/USER", _UUID.sub(r"\1-REDACTED", value))
                for pattern, stand_in in names:
                    text = pattern.sub(stand_in, text)
                return text
            if isinstance(value, list):
                return [scrub(v) for v in value]
            if isinstance(value, dict):
                return {k: scrub(v) for k, v in value.items()}
            return value

        data = self.to_dict()
        host = data.pop("host")
        copy = Snapshot.from_dict({**scrub(data), "host": {**scrub(host), "hostname": None}})
        for gpu in copy.gpus:
            gpu.uuid = None
            gpu.serial = None
        return copy


def read_file_text(p: Path) -> str:
    """The text of a file given as a snapshot, at most :data:`MAX_FILE_BYTES`; one line of error otherwise."""
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise SnapshotError(
                f"{p}: larger than {MAX_FILE_BYTES // 2**20} MiB: not a gpuprov snapshot (they are tens of KiB)"
            )
        return raw.decode("utf-8")
    except FileNotFoundError:
        raise SnapshotError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise SnapshotError(f"{p}: is a directory, expected a snapshot JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"{p}: cannot read: {exc}") from None


_UUID = re.compile(r"\b(GPU|MIG)-[0-9A-Fa-f][0-9A-Fa-f/-]{7,}")
_HOME = re.compile(r"(/home|/Users|/var/home)/[^/:\s]+")
_CC = re.compile(r"[0-9]{1,2}\.[0-9]")
_CUDA = re.compile(r"[0-9]{1,2}\.[0-9]{1,2}")
#: what makes an environment variable's name a secret's: VLLM_API_KEY, HF_TOKEN, OLLAMA_AUTH...
_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "CREDENTIAL", "AUTH", "COOKIE", "PRIVATE")
#: user:password@ (or user@) in a URL, scheme://USERINFO@host, or at the start of a value without a scheme
#: (OLLAMA_HOST=user:pass@host:11434)
_MASKED = re.compile(r"\(set, [0-9]+ chars\)")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://|^)[^/?#@\s]*@")


def looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS)


def masked_env(env: dict[str, str]) -> dict[str, str]:
    """Environment variables as gpuprov keeps and shows them: a secret's value (by its name) is never
    kept, only that it is set and its length; credentials in any URL are masked. Idempotent: a masked
    snapshot loaded again says the same."""
    return {
        name: _URL_CREDENTIALS.sub(r"\g<scheme>***@", value)
        if not looks_secret(name) or _MASKED.fullmatch(value)
        else f"(set, {len(value)} chars)"
        for name, value in env.items()
    }
