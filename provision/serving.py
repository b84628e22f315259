"""Inference servers as hardened systemd services: the profile's ``serving`` section, and the files
apply writes for it.

A profile names one server::

    serving:
      host: 127.0.0.1          # default; another address is an explicit choice (warned about without a key)
      port: 8000               # default per engine: vLLM 8000, llama.cpp 8080, Ollama 11434
      gpus: [0]                # CUDA_VISIBLE_DEVICES, and what ExecStartPre waits for (default: all)
      api_key: true            # a key kept in a root-owned 0600 file, created on first apply
      vllm:      {model: ..., venv: ..., gpu_memory_utilization: 0.85, max_model_len: 8192, ...}
      # or ollama: {...}  — a drop-in for the existing ollama.service, never a replacement
      # or llama_cpp: {model: /srv/m.gguf, server: /usr/local/bin/llama-server | venv: DIR, ...}

:func:`serving_desired` turns (profile, host) into files — a unit or drop-in, a sysusers.d entry for
the server's own non-login user, the key file's name — rendered by :func:`provision.render.render`,
the one renderer that ``plan --diff``, ``render`` and the Ansible role share.

Every value that reaches ``ExecStart=`` goes through the ``systemd_quote`` filter; paths that end up
in other directives (binds, working directories) must be plain paths and are refused otherwise. A
model id cannot start with '-', and ``extra_args`` cannot set what profile keys own (host, port, key).

vLLM options that some releases reject are gated on the vLLM installed in the profile's virtualenv
(:data:`VLLM_OPTIONS`, with sources). A plan on this host also takes away what an earlier profile's
server left and this one does not want: its unit disabled and stopped, its files and key removed.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
import sys
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from provision.errors import UsageError
from provision.profiles.schema import (
    Block,
    SectionType,
    _bool,
    _int,
    _mapping,
    _number,
    _show,
    _text,
    _Where,
    register_section,
)
from provision.render import render
from provision.serverunits import OLLAMA_DROPIN, UNIT, UNIT_DIR, exposure_remedy
from provision.versions import version_or_none

if TYPE_CHECKING:
    from provision.plantypes import Desired, HostState
    from provision.profiles import Profile
    from provision.snapshot import Snapshot

ENGINES = ("vllm", "ollama", "llama_cpp")
DEFAULT_PORT = {"vllm": 8000, "ollama": 11434, "llama_cpp": 8080}
#: the dedicated system user of the servers gpuprov runs (Ollama's installer creates ``ollama``)
USER = {"vllm": "gpuprov-vllm", "ollama": "ollama", "llama_cpp": "gpuprov-llama-cpp"}
#: Ollama's installer makes the ollama user's home here; models go to ~/.ollama/models
OLLAMA_HOME = "/usr/share/ollama"
SECRETS_DIR = "/etc/gpuprov/serving"
SYSUSERS_DIR = "/etc/sysusers.d"
#: how long ExecStartPre waits for NVML to see the GPUs (ollama#7669: servers started before the GPU)
WAIT_GPU_S = 120
#: vLLM loads (and may download) the model before it listens; llama.cpp and Ollama start at once
START_TIMEOUT_S = {"vllm": 1800, "ollama": 300, "llama_cpp": 600}
PLACEHOLDER_KEY = "REPLACE-WITH-A-SECRET-KEY"
#: where a home directory hides a path from a unit with ProtectHome= (systemd.exec(5))
HOME_DIRS = ("/home", "/root", "/run/user")
#: where PrivateTmp= gives a unit empty directories of its own (systemd.exec(5)): the host's files there
#: are out of its sight, and binding them back is no way out (the private /tmp is mounted over them)
TMP_DIRS = ("/tmp", "/var/tmp")

#: vLLM --attention-backend values (vLLM docs, "Attention Backend Feature Support")
VLLM_ATTENTION_BACKENDS = ("FLASH_ATTN", "FLASHINFER", "TRITON_ATTN", "XFORMERS", "TORCH_SDPA", "FLEX_ATTENTION")
#: vLLM --quantization values gpuprov lets a profile name (vLLM docs, "Quantization")
VLLM_QUANTIZATIONS = ("awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "bitsandbytes", "gguf", "compressed-tensors",
                      "modelopt", "marlin", "experts_int8")  # fmt: skip


@dataclass(frozen=True)
class VllmOption:
    """Which vLLM releases accept an option gpuprov writes. ``vllm serve`` builds its parser from
    EngineArgs, so an option that left EngineArgs fails the start ("unrecognized arguments")."""

    flag: str
    #: the first release that accepts it (None: every release gpuprov knows, compat.toml's coverage)
    since: str | None
    #: the first release that rejects it (None: current releases accept it)
    until: str | None
    #: the environment variable that releases before ``since`` read the value from instead
    env_before: str | None
    source: str


#: the one table of vLLM options whose acceptance depends on the release. With the installed vLLM's
#: version known (its dist-info in the virtualenv), the unit gets what that release takes; unknown, it
#: gets what current releases take (the ones ``gpuprov compat plan`` recommends).
VLLM_OPTIONS = {
    "attention_backend": VllmOption(
        "--attention-backend", since="0.12.0", until=None, env_before="VLLM_ATTENTION_BACKEND",
        source="vLLM PR #26315 (AttentionConfig: the attention env vars become CLI arguments, VLLM_ATTENTION_BACKEND "
        "deprecated), approved 2025-11-24: after v0.11.2 (2025-11-20), whose logs still choose the backend from "
        "the variable (FlagGems#1155), and before v0.12.0 (2025-12-03; dates: research/compat-sources.md). "
        "0.12.0 as the first release is by date: medium confidence",
    ),
    "swap_space_gib": VllmOption(
        "--swap-space", since=None, until="0.18.0", env_before=None,
        source="vLLM PR #36216 '[V0 Deprecation] Remove unused swap_space parameter' (merged 2026-03-06, removes "
        "--swap-space from EngineArgs); unsloth-zoo#1210: swap_space is in EngineArgs of 0.15.0-0.17.1 and in none "
        "of the 19 releases 0.18.0-0.29.0. The V1 engine never used it (vllm#27984)",
    ),
}  # fmt: skip

#: llama_cpp.server (llama-cpp-python) takes KV cache types as ggml type numbers (ggml.h enum ggml_type)
GGML_TYPE_IDS = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}

# a path that may appear in a directive other than ExecStart= (binds, working directories): no
# quoting exists for all of them (BindReadOnlyPaths= splits on ':'), so such paths must be plain
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9._+@,=~/-]*$")


class ServingError(UsageError):
    """A serving setting that cannot be turned into a unit on this host (a path systemd cannot carry)."""


# -- the section --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VllmSettings:
    #: a Hugging Face model id or a local directory
    model: str
    #: a virtualenv with vLLM (runs VENV/bin/vllm) — or ``executable``, the vllm script itself
    venv: str | None = None
    executable: str | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    kv_cache_dtype: str | None = None
    quantization: str | None = None
    attention_backend: str | None = None
    max_num_seqs: int | None = None
    swap_space_gib: float | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class OllamaSettings:
    flash_attention: bool | None = None
    num_parallel: int | None = None
    max_loaded_models: int | None = None
    context_length: int | None = None
    gpu_overhead_mib: int | None = None
    keep_alive: str | None = None
    kv_cache_type: str | None = None
    #: OLLAMA_MODELS (default: ~ollama/.ollama/models)
    models_dir: str | None = None


@dataclass(frozen=True)
class LlamaCppSettings:
    #: a GGUF file
    model: str
    #: llama.cpp's llama-server binary — or ``venv``, a llama-cpp-python[server] virtualenv
    server: str | None = None
    venv: str | None = None
    n_gpu_layers: int | None = None
    ctx_size: int | None = None
    parallel: int | None = None
    tensor_split: tuple[float, ...] = ()
    no_mmap: bool = False
    flash_attention: bool | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServingSection:
    engine: str
    settings: VllmSettings | OllamaSettings | LlamaCppSettings
    host: str = "127.0.0.1"
    port: int = 0
    #: GPU indices the server may use (NVML/PCI order); empty: all
    gpus: tuple[int, ...] = ()
    api_key: bool = False

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def unit(self) -> str:
        return UNIT[self.engine]


_ENGINE_KEYS = {
    "vllm": ("model", "venv", "executable", "gpu_memory_utilization", "max_model_len", "kv_cache_dtype",
             "quantization", "attention_backend", "max_num_seqs", "swap_space_gib", "extra_args"),
    "ollama": ("flash_attention", "num_parallel", "max_loaded_models", "context_length", "gpu_overhead_mib",
               "keep_alive", "kv_cache_type", "models_dir"),
    "llama_cpp": ("model", "server", "venv", "n_gpu_layers", "ctx_size", "parallel", "tensor_split", "no_mmap",
                  "flash_attention", "cache_type_k", "cache_type_v", "extra_args"),
}  # fmt: skip
_SERVING_KEYS = ("host", "port", "gpus", "api_key", *ENGINES)


def _path(value: Any, where: _Where, what: str) -> str:
    text = _text(value, where, what)
    if not text.startswith("/") or "\n" in text:
        raise where.error(f"expected {what} (an absolute path), got {_show(value)}")
    if not _PLAIN_PATH.match(text) or "/../" in text + "/" or "/./" in text + "/":
        raise where.error(
            f"{_show(text)}: {what} must be a plain absolute path (letters, digits, / . _ - + @ , = ~): "
            "systemd's path directives have no quoting for spaces, ':' or quotes"
        )
    longest = max((len(part.encode()) for part in text.split("/")), default=0)
    if len(text.encode()) > PATH_MAX_BYTES or longest > NAME_MAX_BYTES:
        raise where.error(
            f"{_show(text)}: {what} is longer than Linux allows (a path of at most {PATH_MAX_BYTES} bytes, "
            f"each name at most {NAME_MAX_BYTES})"
        )
    return str(PurePosixPath(text))


#: Linux's PATH_MAX and NAME_MAX (limits.h): a longer path in a profile could never be opened
PATH_MAX_BYTES = 4095
NAME_MAX_BYTES = 255


def _kv_types(engine: str) -> tuple[str, ...]:
    """The KV cache types an engine accepts: gpuprov fit's table (imported here, not at load: fit is big)."""
    from provision.fit.memory_model import KV_CACHE_TYPES

    return KV_CACHE_TYPES[engine]


def _control(text: str) -> bool:
    """Newlines, tabs and other control characters, Unicode line separators: never in a unit."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


#: server options that profile keys own: in extra_args they would override them unseen (plan and doctor
#: read where a server listens, and whether it needs a key, from those keys and the unit's own options)
OWNED_OPTIONS = {
    "host": "serving.host", "port": "serving.port",
    "api-key": "serving.api_key: true (a key in a root-only file, not in the world-readable unit)",
    "api-key-file": "serving.api_key: true",
}  # fmt: skip


def _owned_option(arg: str) -> str | None:
    """The profile key an extra argument would override: ``--host``, ``--port=80``, ``--api_key``, and the
    abbreviations Python's argparse accepts (``--ho``, ``--a``; vLLM and llama_cpp.server use argparse)."""
    if not arg.startswith("--"):
        return None
    name = arg[2:].split("=", 1)[0].replace("_", "-")
    if not name:  # "--": the end of the options
        return None
    for option, key in OWNED_OPTIONS.items():
        if option.startswith(name):
            return key
    return None


#: options that read the server's settings from a file (``vllm serve --config FILE``, llama_cpp.server's
#: ``--config_file``): such a file can set host, port and key where neither the profile nor plan see them,
#: and it changes without gpuprov knowing; refused rather than read (what plan read would not be what the
#: unit starts with after the file changes, and the file is not gpuprov's to record or revert)
CONFIG_FILE_OPTIONS = {"vllm": "config", "llama_cpp": "config-file"}


def _config_option(arg: str, engine: str) -> bool:
    """``--config FILE``, ``--config=FILE`` and argparse's abbreviations of it (``--conf``)."""
    name = arg[2:].split("=", 1)[0].replace("_", "-") if arg.startswith("--") else ""
    return len(name) >= 2 and CONFIG_FILE_OPTIONS[engine].startswith(name)


def _args(value: Any, where: _Where, engine: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise where.error(f"expected a list of arguments (one per item, no shell), got {_show(value)}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise where.error(f"expected text or a number per argument, got {_show(item)}")
        text = str(item)
        if _control(text):
            raise where.error(f"{_show(text)}: an argument cannot contain a newline or control character")
        key = _owned_option(text)
        if key is not None:
            raise where.error(f"{_show(text)}: set {key} instead of passing it in extra_args")
        if _config_option(text, engine):
            raise where.error(
                f"{_show(text)}: a server config file can set host, port and API key unseen: set serving.host, "
                f"serving.port, serving.api_key and serving.{engine}.* (other options one by one in extra_args)"
            )
        out.append(text)
    return tuple(out)


def _not_an_option(text: str, where: _Where, what: str) -> str:
    """A value that lands on the command line as a positional argument: one starting with '-' would be
    read as an option (a model id "--trust-remote-code" would turn that on)."""
    if text.startswith("-"):
        raise where.error(f"{_show(text)}: {what} cannot start with '-' (the server would read it as an option)")
    return text


def _one_line(value: Any, where: _Where, what: str) -> str:
    text = _text(value, where, what)
    if _control(text):
        raise where.error(f"{_show(text)}: {what} cannot contain a newline or control character")
    return text


def _choice(value: Any, where: _Where, choices: tuple[str, ...], *, upper: bool = False) -> str:
    text = _one_line(value, where, "a name")
    norm = text.upper() if upper else text.lower()
    if norm not in choices:
        raise where.error(f"{_show(text)} is not one of {', '.join(choices)}")
    return norm


def _exactly_one(data: dict[str, Any], keys: tuple[str, str], where: _Where) -> None:
    if sum(1 for k in keys if data.get(k) is not None) != 1:
        raise where.error(f"set exactly one of {keys[0]} or {keys[1]}")


def _parse_vllm(value: Any, w: _Where) -> VllmSettings:
    d = {k: v for k, v in _mapping(value, w, _ENGINE_KEYS["vllm"]).items() if v is not None}
    if "model" not in d:
        raise w.error("expected model: a Hugging Face model id or a local model directory")
    _exactly_one(d, ("venv", "executable"), w)
    model = _not_an_option(_one_line(d["model"], w["model"], "a model id or directory"), w["model"], "a model id")
    return VllmSettings(
        model=model,
        venv=_path(d["venv"], w["venv"], "the virtualenv directory") if "venv" in d else None,
        executable=_path(d["executable"], w["executable"], "the vllm executable") if "executable" in d else None,
        gpu_memory_utilization=(
            _number(d["gpu_memory_utilization"], w["gpu_memory_utilization"], "a fraction of GPU memory", 0, 1)
            if "gpu_memory_utilization" in d
            else None
        ),
        max_model_len=_int(d["max_model_len"], w["max_model_len"], "a context length in tokens", 16, 10_000_000)
        if "max_model_len" in d
        else None,
        kv_cache_dtype=_choice(d["kv_cache_dtype"], w["kv_cache_dtype"], _kv_types("vllm"))
        if "kv_cache_dtype" in d
        else None,
        quantization=_choice(d["quantization"], w["quantization"], VLLM_QUANTIZATIONS) if "quantization" in d else None,
        attention_backend=_choice(d["attention_backend"], w["attention_backend"], VLLM_ATTENTION_BACKENDS, upper=True)
        if "attention_backend" in d
        else None,
        max_num_seqs=_int(d["max_num_seqs"], w["max_num_seqs"], "a number of sequences", 1, 65536)
        if "max_num_seqs" in d
        else None,
        swap_space_gib=_number(d["swap_space_gib"], w["swap_space_gib"], "CPU swap space in GiB", -1, 4096)
        if "swap_space_gib" in d
        else None,
        extra_args=_args(d.get("extra_args"), w["extra_args"], "vllm"),
    )


def _parse_ollama(value: Any, w: _Where) -> OllamaSettings:
    d = {k: v for k, v in _mapping(value if value is not None else {}, w, _ENGINE_KEYS["ollama"]).items()
         if v is not None}  # fmt: skip
    keep_alive = None
    if "keep_alive" in d:
        keep_alive = str(d["keep_alive"]) if isinstance(d["keep_alive"], int) else _one_line(d["keep_alive"], w, "")
        if not re.fullmatch(r"-?\d+(\.\d+)?(ns|us|ms|s|m|h)?", keep_alive):
            raise w["keep_alive"].error(f"{_show(keep_alive)} is not a duration like 5m, 1h, 300 or -1 (forever)")
    return OllamaSettings(
        flash_attention=_bool(d["flash_attention"], w["flash_attention"]) if "flash_attention" in d else None,
        num_parallel=_int(d["num_parallel"], w["num_parallel"], "parallel requests per model", 1, 1024)
        if "num_parallel" in d
        else None,
        max_loaded_models=_int(d["max_loaded_models"], w["max_loaded_models"], "a number of models", 1, 64)
        if "max_loaded_models" in d
        else None,
        context_length=_int(d["context_length"], w["context_length"], "a context length in tokens", 256, 10_000_000)
        if "context_length" in d
        else None,
        gpu_overhead_mib=_int(d["gpu_overhead_mib"], w["gpu_overhead_mib"], "MiB of GPU memory kept free", 0, 1 << 20)
        if "gpu_overhead_mib" in d
        else None,
        keep_alive=keep_alive,
        kv_cache_type=_choice(d["kv_cache_type"], w["kv_cache_type"], _kv_types("ollama"))
        if "kv_cache_type" in d
        else None,
        models_dir=_path(d["models_dir"], w["models_dir"], "the models directory") if "models_dir" in d else None,
    )


def _parse_llama_cpp(value: Any, w: _Where) -> LlamaCppSettings:
    d = {k: v for k, v in _mapping(value, w, _ENGINE_KEYS["llama_cpp"]).items() if v is not None}
    if "model" not in d:
        raise w.error("expected model: the path of a GGUF file")
    _exactly_one(d, ("server", "venv"), w)
    split: tuple[float, ...] = ()
    if "tensor_split" in d:
        ts = d["tensor_split"]
        if not isinstance(ts, list) or not ts:
            raise w["tensor_split"].error(f"expected a list of proportions per GPU, got {_show(ts)}")
        split = tuple(_number(v, w["tensor_split"], "a proportion", -1e-9, 1e6) for v in ts)
        if not any(v > 0 for v in split):
            raise w["tensor_split"].error("at least one proportion must be above 0")
    kv = _kv_types("llama.cpp")
    out = LlamaCppSettings(
        model=_one_line(d["model"], w["model"], "a GGUF path"),
        server=_path(d["server"], w["server"], "the llama-server binary") if "server" in d else None,
        venv=_path(d["venv"], w["venv"], "the virtualenv directory") if "venv" in d else None,
        n_gpu_layers=_int(d["n_gpu_layers"], w["n_gpu_layers"], "a number of layers", 0, 100_000)
        if "n_gpu_layers" in d
        else None,
        ctx_size=_int(d["ctx_size"], w["ctx_size"], "a context size in tokens", 0, 10_000_000)
        if "ctx_size" in d
        else None,
        parallel=_int(d["parallel"], w["parallel"], "a number of slots", 1, 4096) if "parallel" in d else None,
        tensor_split=split,
        no_mmap=_bool(d["no_mmap"], w["no_mmap"]) if "no_mmap" in d else False,
        flash_attention=_bool(d["flash_attention"], w["flash_attention"]) if "flash_attention" in d else None,
        cache_type_k=_choice(d["cache_type_k"], w["cache_type_k"], kv) if "cache_type_k" in d else None,
        cache_type_v=_choice(d["cache_type_v"], w["cache_type_v"], kv) if "cache_type_v" in d else None,
        extra_args=_args(d.get("extra_args"), w["extra_args"], "llama_cpp"),
    )
    if not out.model.startswith("/"):
        raise w["model"].error(f"{_show(out.model)}: expected the absolute path of a GGUF file")
    if out.venv is not None and out.parallel is not None:
        raise w["parallel"].error("parallel slots are a llama-server option; llama_cpp.server (venv) has none")
    return out


def parse_serving(value: Any, where: _Where) -> ServingSection:
    data = _mapping(value, where, _SERVING_KEYS)
    engines = [e for e in ENGINES if e in data]
    if len(engines) != 1:
        raise where.error(f"expected exactly one server: one of {', '.join(ENGINES)} (got {len(engines)})")
    engine = engines[0]
    parser = {"vllm": _parse_vllm, "ollama": _parse_ollama, "llama_cpp": _parse_llama_cpp}[engine]
    settings = parser(data[engine], where[engine])
    host = "127.0.0.1"
    if data.get("host") is not None:
        host = _one_line(data["host"], where["host"], "an IP address")
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise where["host"].error(f"{_show(host)} is not an IP address (127.0.0.1, 0.0.0.0, ::1 ...)") from None
    port = DEFAULT_PORT[engine]
    if data.get("port") is not None:
        port = _int(data["port"], where["port"], "a TCP port", 1, 65535)
    gpus: tuple[int, ...] = ()
    if data.get("gpus") is not None:
        raw = data["gpus"]
        if not isinstance(raw, list):
            raise where["gpus"].error(f"expected a list of GPU indices like [0, 1], got {_show(raw)}")
        gpus = tuple(_int(g, where["gpus"], "a GPU index", 0, 63) for g in raw)
        if len(set(gpus)) != len(gpus):
            raise where["gpus"].error(f"{_show(raw)} names a GPU twice")
    api_key = _bool(data["api_key"], where["api_key"]) if data.get("api_key") is not None else False
    if api_key and engine == "ollama":
        raise where["api_key"].error(
            "Ollama has no API key: keep it on 127.0.0.1, or put a proxy with one in front "
            "(api_key: false where a profile this one extends sets it)"
        )
    return ServingSection(engine, settings, host, port, gpus, api_key)


def serving_dict(s: ServingSection) -> dict[str, Any]:
    settings = {}
    for key in _ENGINE_KEYS[s.engine]:
        value = getattr(s.settings, key)
        if value is None or value == () or (key == "no_mmap" and value is False):
            continue
        settings[key] = list(value) if isinstance(value, tuple) else value
    out: dict[str, Any] = {"host": s.host, "port": s.port, s.engine: settings, "api_key": s.api_key}
    if s.gpus:
        out["gpus"] = list(s.gpus)
    return out




# -- the command lines -----------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:g}" if not math.isclose(value, round(value)) else str(round(value))


def vllm_prefix(st: VllmSettings) -> str:
    """The environment vLLM is installed in: the virtualenv, or the one the ``executable`` lives in."""
    return st.venv or str(PurePosixPath(st.executable or "/").parent.parent)


def installed_vllm(st: VllmSettings, root: Path) -> Version | None:
    """The vLLM release in the profile's environment under ``root``, from its ``vllm-*.dist-info``
    (read, never imported: ``root`` may be an image tree). None: not installed, or not one version."""
    found = set()
    for dist in (root / vllm_prefix(st).lstrip("/")).glob("lib/python3*/site-packages/vllm-*.dist-info"):
        version = None
        try:
            for line in (dist / "METADATA").read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("Version:"):
                    version = version_or_none(line.partition(":")[2].strip())
                    break
                if not line:  # the headers end at the first empty line
                    break
        except OSError:
            version = version_or_none(dist.name.removeprefix("vllm-").removesuffix(".dist-info"))
        if version is None:
            return None
        found.add(version)
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class VllmArgs:
    """How a profile's vLLM settings reach the server, for one vLLM release (None: not known)."""

    options: list[str]
    environment: list[tuple[str, str]]
    notes: list[str]


def vllm_args(st: VllmSettings, version: Version | None) -> VllmArgs:
    """The options after ``vllm serve MODEL --host H --port P``, gated on :data:`VLLM_OPTIONS`."""
    options: list[str] = []
    env: list[tuple[str, str]] = []
    notes: list[str] = []
    where = f"vLLM {version} in {vllm_prefix(st)}" if version is not None else None
    for key, flag in (
        ("gpu_memory_utilization", "--gpu-memory-utilization"),
        ("max_model_len", "--max-model-len"),
        ("kv_cache_dtype", "--kv-cache-dtype"),
        ("quantization", "--quantization"),
        ("attention_backend", "--attention-backend"),
        ("max_num_seqs", "--max-num-seqs"),
        ("swap_space_gib", "--swap-space"),
    ):
        value = getattr(st, key)
        if value is None:
            continue
        text = _num(value) if isinstance(value, float) else str(value)
        gate = VLLM_OPTIONS.get(key)
        if gate is not None and gate.until is not None and (version is None or version >= Version(gate.until)):
            notes.append(
                f"serving.vllm.{key} is left out: vLLM {gate.until} and later reject {gate.flag}, and "
                + (f"{where} is one of them" if where else f"the vLLM version in {vllm_prefix(st)} is not known")
            )
            continue
        if gate is not None and gate.since is not None and version is not None and version < Version(gate.since):
            if gate.env_before is None:
                notes.append(f"serving.vllm.{key} is left out: {gate.flag} is vLLM {gate.since}+, and {where} is older")
                continue
            env.append((gate.env_before, text))  # what releases before the option read instead
            continue
        options += [flag, text]
    return VllmArgs(options, env, notes)


def server_argv(s: ServingSection, *, vllm_version: Version | None = None) -> list[str]:
    """The server's command line, one list item per argument (quoted for systemd by the template).
    ``vllm_version``: the installed vLLM, whose options are written (None: current releases')."""
    st = s.settings
    if isinstance(st, VllmSettings):
        exe = st.executable or f"{st.venv}/bin/vllm"
        argv = [exe, "serve", st.model, "--host", s.host, "--port", str(s.port)]
        return argv + vllm_args(st, vllm_version).options + list(st.extra_args)
    if isinstance(st, LlamaCppSettings):
        if st.server is not None:
            argv = [st.server, "--model", st.model, "--host", s.host, "--port", str(s.port)]
            pairs: list[tuple[str, Any]] = [
                ("--n-gpu-layers", st.n_gpu_layers),
                ("--ctx-size", st.ctx_size),
                ("--parallel", st.parallel),
                ("--tensor-split", ",".join(_num(v) for v in st.tensor_split) if st.tensor_split else None),
                ("--flash-attn", None if st.flash_attention is None else ("on" if st.flash_attention else "off")),
                ("--cache-type-k", st.cache_type_k),
                ("--cache-type-v", st.cache_type_v),
            ]
            for flag, value in pairs:
                if value is not None:
                    argv += [flag, str(value)]
            if st.no_mmap:
                argv.append("--no-mmap")
            return [*argv, "--offline", *st.extra_args]
        argv = [f"{st.venv}/bin/python", "-m", "llama_cpp.server", "--model", st.model,
                "--host", s.host, "--port", str(s.port)]  # fmt: skip
        pairs = [
            ("--n_gpu_layers", st.n_gpu_layers),
            ("--n_ctx", st.ctx_size),
            ("--flash_attn", None if st.flash_attention is None else str(st.flash_attention)),
            ("--type_k", None if st.cache_type_k is None else GGML_TYPE_IDS[st.cache_type_k]),
            ("--type_v", None if st.cache_type_v is None else GGML_TYPE_IDS[st.cache_type_v]),
            ("--use_mmap", "False" if st.no_mmap else None),
        ]
        for flag, value in pairs:
            if value is not None:
                argv += [flag, str(value)]
        if st.tensor_split:  # a list option (argparse nargs="*"): one argument per GPU
            argv += ["--tensor_split", *(_num(v) for v in st.tensor_split)]
        return argv + list(st.extra_args)
    raise ServingError(f"{s.engine}: gpuprov does not write this server's command line (Ollama's unit has its own)")


def key_file(engine: str, *, env_file: bool) -> str:
    """Where apply keeps a server's API key: an environment file (``VLLM_API_KEY=``, ``API_KEY=``) or the
    bare key (llama-server's ``--api-key-file``)."""
    return f"{SECRETS_DIR}/{engine.replace('_', '-')}.{'env' if env_file else 'key'}"


#: every key file a serving section can make apply create (secret: never read into a plan)
KEY_FILES = (
    key_file("vllm", env_file=True),
    key_file("llama_cpp", env_file=True),
    key_file("llama_cpp", env_file=False),
)

#: LoadCredential=api-key:FILE hands the root-only key file to the server's user; the unit passes
#: ``--api-key-file %d/api-key`` (``%d``: the credentials directory, systemd.unit(5) specifiers)
CREDENTIAL_NAME = "api-key"


def wait_gpu_argv(python: str, s: ServingSection) -> list[str]:
    argv = [python, "-m", "provision", "wait-gpu", "--timeout-s", str(WAIT_GPU_S)]
    if s.gpus:
        argv += ["--gpus", ",".join(str(g) for g in s.gpus)]
    return argv


# -- which paths the sandbox must show ------------------------------------------------------------------


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in dirs)


def _read_text(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def interpreter_paths(python: str, root: Path) -> list[str]:
    """The directories an interpreter needs: its virtualenv, and the base installation the venv points
    at (``pyvenv.cfg`` ``home =``; a pyenv or uv Python under /root is hidden by ProtectHome=)."""
    exe = PurePosixPath(python)
    out = [str(exe.parent.parent)] if exe.parent.name == "bin" else [str(exe.parent)]
    cfg = _read_text(root, str(exe.parent.parent / "pyvenv.cfg")) if exe.parent.name == "bin" else None
    if cfg:
        for line in cfg.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip().startswith("/"):
                home = PurePosixPath(value.strip())
                out.append(str(home.parent if home.name == "bin" else home))
    return out


def gpuprov_paths(python: str, root: Path) -> list[str]:
    """What a unit running ``python -m provision`` reads: the interpreter's directories and, when it is
    the interpreter running now, the package's own (an editable install's checkout is outside the venv)."""
    out = interpreter_paths(python, root)
    if python == sys.executable:
        out.append(str(Path(__file__).parent))
    return out


def _outermost(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in sorted(set(paths)):
        if not any(_under(p, (q,)) for q in out):
            out.append(p)
    return out


def private_tmp_hidden(paths: list[str], root: Path) -> list[str]:
    """The paths a unit with ``PrivateTmp=yes`` cannot see: under /tmp or /var/tmp as written, or once
    this host's symlinks are resolved (an image tree's are not: they point into the image)."""
    hidden = []
    for p in paths:
        real = os.path.realpath(p) if root == Path("/") else p
        if _under(p, TMP_DIRS):
            hidden.append(p)
        elif _under(real, TMP_DIRS):
            hidden.append(f"{p} (a link into {real})")
    return _outermost(hidden)


def private_tmp_refusal(unit: str, hidden: list[str], what: str, remedy: str) -> str:
    """One line: which paths a unit needs that its PrivateTmp=yes hides, and what to do."""
    return (
        f"{unit} cannot see {what} {', '.join(hidden)}: /tmp and /var/tmp are the unit's own empty ones "
        f"(PrivateTmp=yes), so it would fail to start; {remedy}"
    )


#: the remedy when gpuprov itself runs from /tmp (a checkout cloned there, a venv made there)
GPUPROV_TMP_REMEDY = "run gpuprov from an installation outside them (e.g. a virtualenv in /opt/gpuprov)"


def gpuprov_sandbox(unit: str, python: str, root: Path) -> tuple[list[str], list[str]]:
    """For a hardened unit that runs only gpuprov (the boot unit): (the home directories to bind read-only
    past ProtectHome=, one line per reason it could not start)."""
    paths = gpuprov_paths(python, root)
    refusals = []
    # in an image tree (root not /) the unit runs the image's gpuprov at that path: not this process's
    hidden = private_tmp_hidden(paths, root) if root == Path("/") else []
    if hidden:
        refusals.append(private_tmp_refusal(unit, hidden, "gpuprov's interpreter or package", GPUPROV_TMP_REMEDY))
    try:
        binds = _needs_visible(paths)
    except ServingError as exc:
        binds, refusals = [], [*refusals, f"{unit}: {exc}"]
    return binds, refusals


def _needs_visible(paths: list[str]) -> list[str]:
    """The paths that ProtectHome= would hide, deduplicated, a path inside another dropped."""
    hidden = sorted({p for p in paths if _under(p, HOME_DIRS)})
    out: list[str] = []
    for p in hidden:
        if not any(_under(p, (q,)) for q in out):
            out.append(p)
    for p in out:
        if not _PLAIN_PATH.match(p):
            raise ServingError(
                f"{p!r} is under a home directory and must be bound into the sandbox, but has characters "
                "systemd's BindReadOnlyPaths= cannot carry: move it (e.g. to /opt or /srv)"
            )
    return out


# -- desired files -----------------------------------------------------------------------------------------


@dataclass
class ServingFiles:
    """What a serving section asks apply to write (the key file's content is not here: it is secret)."""

    engine: str
    unit: str
    #: (path, content, mode, note)
    files: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: the file that holds the API key (root, 0600), created on first apply; None: no key
    key_file: str | None = None
    #: ``VLLM_API_KEY=`` line in an environment file, or the bare key (llama-server --api-key-file)
    key_format: str = "env"
    key_env: str | None = None
    sysusers_file: str | None = None
    #: the unit is gpuprov's own (enable it) or the vendor's (Ollama: only restart it)
    owned: bool = True
    notes: list[str] = field(default_factory=list)
    #: why the unit could not start as written (a path its sandbox hides): plan warns, apply refuses
    refusals: list[str] = field(default_factory=list)

    def key_content(self, key: str) -> str:
        return f"{self.key_env}={key}\n" if self.key_format == "env" else key + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "unit": self.unit,
            "owned": self.owned,
            "key_file": self.key_file,
            "key_format": self.key_format,
            "key_env": self.key_env,
            "sysusers_file": self.sysusers_file,
            "paths": [f[0] for f in self.files],
        }


def _gpu_env(s: ServingSection) -> list[tuple[str, str]]:
    # CUDA numbers GPUs fastest-first unless told otherwise; NVML (and gpuprov, nvidia-smi) by PCI bus
    env = [("CUDA_DEVICE_ORDER", "PCI_BUS_ID")]
    if s.gpus:
        env.append(("CUDA_VISIBLE_DEVICES", ",".join(str(g) for g in s.gpus)))
    return env


def serving_files(profile_name: str, s: ServingSection, *, python: str, root: Path = Path("/")) -> ServingFiles:
    """Every file the section asks for, rendered. ``python``: the interpreter ExecStartPre runs gpuprov
    with; ``root``: where virtualenvs are looked up (``pyvenv.cfg``) to find what the sandbox must show."""
    if not python.startswith("/") or not _PLAIN_PATH.match(python):
        raise ServingError(f"{python!r}: the interpreter the units run gpuprov with must be a plain absolute path")
    engine = s.engine
    user = USER[engine]
    own = gpuprov_paths(python, root)  # ExecStartPre= runs gpuprov wait-gpu in the same sandbox
    readable = list(own)
    writable: list[str] = []
    env = _gpu_env(s)
    key_env = None
    files = ServingFiles(engine, s.unit)
    st = s.settings
    vllm_version = None
    if isinstance(st, VllmSettings):
        vllm_version = installed_vllm(st, root)
        gated = vllm_args(st, vllm_version)
        env += gated.environment
        files.notes += gated.notes
        readable += (
            interpreter_paths(f"{st.venv}/bin/python", root)
            if st.venv
            else [str(PurePosixPath(st.executable or "/").parent)]
        )
        if st.model.startswith("/"):
            readable.append(st.model)
        env += [("HF_HOME", f"/var/cache/{user}/huggingface"), ("VLLM_CACHE_ROOT", f"/var/cache/{user}/vllm"),
                ("XDG_CACHE_HOME", f"/var/cache/{user}"), ("VLLM_NO_USAGE_STATS", "1"),
                ("DO_NOT_TRACK", "1")]  # fmt: skip
        key_env = "VLLM_API_KEY"
    elif isinstance(st, LlamaCppSettings):
        if st.venv:
            readable += interpreter_paths(f"{st.venv}/bin/python", root)
        else:
            readable.append(str(PurePosixPath(st.server or "/").parent))
        readable.append(st.model)
        if st.venv:
            key_env = "API_KEY"  # llama_cpp.server reads its settings from the environment
        env += [("XDG_CACHE_HOME", f"/var/cache/{user}")]
    else:
        assert isinstance(st, OllamaSettings)
        env += _ollama_env(s, st)
        writable.append(OLLAMA_HOME)
        if st.models_dir:
            writable.append(st.models_dir)
    hidden = private_tmp_hidden(own, root) if root == Path("/") else []  # an image tree runs its own gpuprov
    if hidden:
        files.refusals.append(
            private_tmp_refusal(files.unit, hidden, "gpuprov's interpreter or package", GPUPROV_TMP_REMEDY)
        )
    hidden = private_tmp_hidden([p for p in readable[len(own) :] + writable if p not in own], root)
    if hidden:
        files.refusals.append(private_tmp_refusal(files.unit, hidden, f"serving.{engine}'s",
                                                  "move it out of them (e.g. to /opt or /srv)"))  # fmt: skip
    binds = _needs_visible(readable)
    binds_rw = [p for p in _needs_visible(writable) if p not in binds]
    hardening = {
        "protect_home": "tmpfs" if binds or binds_rw else "yes",
        "bind_ro": binds,
        # "-": a directory that does not exist (yet) is skipped; without it the unit fails to start
        # with 226/NAMESPACE (systemd.exec(5), ReadWritePaths=, BindPaths=)
        "bind_rw": ["-" + p for p in binds_rw],
        "read_write": ["-" + p for p in writable if p not in binds_rw],
    }
    wait = wait_gpu_argv(python, s)
    common = {
        "profile": profile_name,
        "engine": engine,
        "user": user,
        "host": s.host,
        "port": s.port,
        "wait_argv": wait,
        "environment": env,
        "hardening": hardening,
        "start_timeout_s": START_TIMEOUT_S[engine] + WAIT_GPU_S,
    }
    if engine == "ollama":
        files.owned = False
        text = render("ollama-override.conf.j2", common)
        files.files.append((OLLAMA_DROPIN, text, "0644", "drop-in for Ollama's own ollama.service"))
    else:
        name = files.unit.removesuffix(".service")
        if s.api_key:
            files.key_file = key_file(engine, env_file=key_env is not None)
            files.key_format = "env" if key_env else "bare"
            files.key_env = key_env
        sysusers = f"{SYSUSERS_DIR}/{name}.conf"
        files.sysusers_file = sysusers
        unit_vars = {
            **common,
            "argv": server_argv(s, vllm_version=vllm_version),
            "state_dir": name,
            "env_file": files.key_file if files.key_format == "env" else None,
            "credential": f"{CREDENTIAL_NAME}:{files.key_file}" if files.key_format == "bare" else None,
            "model": getattr(st, "model", ""),
        }
        template = "gpuprov-vllm.service.j2" if engine == "vllm" else "gpuprov-llama-cpp.service.j2"
        files.files.append((f"{UNIT_DIR}/{files.unit}", render(template, unit_vars), "0644", f"the {engine} server"))
        files.files.append(
            (sysusers, render("gpuprov-serving.sysusers.j2", {"user": user, "profile": profile_name,
                                                              "home": f"/var/lib/{name}", "engine": engine}),
             "0644", f"the {user} system user (no login)")
        )  # fmt: skip
    if not s.loopback:
        if s.api_key:
            files.notes.append(f"{engine} listens on {s.host}:{s.port}, reachable from other hosts (API key required)")
        else:
            files.notes.append(
                f"WARNING: {engine} listens on {s.host}:{s.port} without an API key: anyone who can reach this "
                f"host can use it; {exposure_remedy(engine)}"
            )
    return files


def _ollama_env(s: ServingSection, st: OllamaSettings) -> list[tuple[str, str]]:
    host = f"[{s.host}]" if ":" in s.host else s.host
    env = [("OLLAMA_HOST", f"{host}:{s.port}")]
    for key, value in (
        ("OLLAMA_FLASH_ATTENTION", None if st.flash_attention is None else ("1" if st.flash_attention else "0")),
        ("OLLAMA_NUM_PARALLEL", st.num_parallel),
        ("OLLAMA_MAX_LOADED_MODELS", st.max_loaded_models),
        ("OLLAMA_CONTEXT_LENGTH", st.context_length),
        # bytes (Ollama's envconfig.GpuOverhead parses an integer number of bytes)
        ("OLLAMA_GPU_OVERHEAD", None if st.gpu_overhead_mib is None else st.gpu_overhead_mib * 1024 * 1024),
        ("OLLAMA_KEEP_ALIVE", st.keep_alive),
        ("OLLAMA_KV_CACHE_TYPE", st.kv_cache_type),
        ("OLLAMA_MODELS", st.models_dir),
    ):
        if value is not None:
            env.append((key, str(value)))
    return env


def key_file_notes(path: str, root: Path) -> list[str]:
    """What apply will put right about the key file there: a key gpuprov did not make (compared by hash,
    never shown), an owner or mode other than root's 0600. Nothing where it cannot be looked at (a user)."""
    from provision import apikeys, applystate
    from provision.errors import GpuprovError

    target = root / path.lstrip("/")
    try:
        st = target.lstat()
    except OSError:
        return []  # absent (apply makes it), or not visible to this user
    out = []
    wrong = []
    if stat.S_IMODE(st.st_mode) != 0o600:
        wrong.append(f"mode {stat.S_IMODE(st.st_mode):04o}")
    if (st.st_uid, st.st_gid) != (0, 0):
        wrong.append(f"owner {st.st_uid}:{st.st_gid}")
    if wrong and stat.S_ISREG(st.st_mode):
        out.append(f"{path} has {', '.join(wrong)}: apply makes it root's, 0600")
    try:
        content = target.read_text(encoding="utf-8", errors="surrogateescape") if stat.S_ISREG(st.st_mode) else None
        made = apikeys.made_by_gpuprov(applystate.state_dir(root), path, content)
    except (OSError, GpuprovError):
        return out  # root's alone: apply looks
    if not made:
        out.append(
            f"{path} holds a key gpuprov did not make (gpuprov render's placeholder, or one written by hand): "
            "apply replaces it with a new one (the old one is kept for gpuprov revert)"
        )
    return out


def placeholder_key_file(files: ServingFiles) -> tuple[str, str] | None:
    """``gpuprov render``: the key file with a placeholder instead of a secret."""
    if files.key_file is None:
        return None
    return files.key_file, files.key_content(PLACEHOLDER_KEY)


# -- plan -------------------------------------------------------------------------------------------------


#: every path and unit a serving section can make gpuprov write (what the host state reader looks at)
MANAGED_FILES = (
    f"{UNIT_DIR}/{UNIT['vllm']}",
    f"{UNIT_DIR}/{UNIT['llama_cpp']}",
    OLLAMA_DROPIN,
    f"{SYSUSERS_DIR}/gpuprov-vllm.conf",
    f"{SYSUSERS_DIR}/gpuprov-llama-cpp.conf",
)
MANAGED_UNITS = tuple(UNIT.values())


def add_to_desired(desired: Desired, snapshot: Snapshot, profile: Profile, host: HostState, root: Path) -> None:
    """The serving part of a plan: files and units into ``desired.serving_*``, warnings into notes."""
    from provision.plantypes import FileTarget, PlanError, UnitTarget

    section = profile.sections.get("serving")
    if section is None:
        _remove_stale(desired, host, root, profile.name, None)
        return
    try:
        files = serving_files(profile.name, section, python=host.python, root=root)
    except ServingError as exc:
        raise PlanError(f"profile {profile.name}: serving: {exc}") from None
    known = {g.index for g in snapshot.gpus}
    missing = [g for g in section.gpus if g not in known]
    if missing and snapshot.gpus:
        raise PlanError(
            f"profile {profile.name}: serving.gpus names GPU {', '.join(map(str, missing))}, but this host has "
            f"GPU {', '.join(str(g.index) for g in snapshot.gpus)}"
        )
    for path, content, mode, note in files.files:
        desired.serving_files.append(FileTarget(path, content, mode, note))
    start = host.systemd_running
    program = server_argv(section)[0] if files.owned else None
    if program is not None and host.known and not (root / program.lstrip("/")).exists():
        start = False
        desired.notes.append(
            f"{program} is not on this host: {files.unit} is written and enabled, and starts once it is installed"
        )
    if files.owned:
        desired.serving_units.append(UnitTarget(files.unit, True, now=start, note=f"the {section.engine} server"))
    elif host.known and host.units.get(files.unit) is not None and host.units[files.unit].path is None:
        desired.notes.append(
            f"{files.unit} is not installed: the drop-in takes effect once Ollama's installer has written it"
        )
    if files.key_file:
        desired.notes.append(
            f"API key: kept in {files.key_file} (root, 0600, put right on every apply), made by apply and "
            "never shown; a key there that gpuprov did not make (gpuprov render's placeholder, or one written "
            "by hand) is replaced, the old one kept for gpuprov revert; clients send it as 'Authorization: "
            "Bearer KEY'"
        )
        if host.known:
            desired.notes.extend(key_file_notes(files.key_file, root))
    if isinstance(section.settings, OllamaSettings) and host.known:
        installed = host.units.get(files.unit) is None or host.units[files.unit].path is not None
        for path, what in ((OLLAMA_HOME if installed else None, "Ollama's installer makes it"),
                           (section.settings.models_dir, "")):  # fmt: skip
            if path and not (root / path.lstrip("/")).is_dir():
                desired.notes.append(
                    f"{path} does not exist: the sandbox skips it, and Ollama cannot write there until it does "
                    f"({what or 'create it, owned by the ollama user'})"
                )
    for line in files.refusals:
        desired.refusals.append(line)
        desired.notes.append(f"WARNING: {line} (apply refuses this)")
    desired.notes.extend(files.notes)
    desired.notes.extend(fit_notes(section, snapshot, root))
    desired.serving = {**files.to_dict(), "start": start}
    _remove_stale(desired, host, root, profile.name, files)


def _plan(desired: Desired, snapshot: Snapshot, profile: Profile, host: HostState) -> None:
    add_to_desired(desired, snapshot, profile, host, Path(host.root))


def _exists(root: Path, path: str) -> bool | None:
    """Is the file there? None: it cannot be told (a root-only directory, read as a user)."""
    try:
        return (root / path.lstrip("/")).exists()
    except OSError:
        return None


def _remove_stale(desired: Desired, host: HostState, root: Path, profile_name: str, files: ServingFiles | None) -> None:
    """What an earlier profile's server left that this one does not want (another engine, no server, no
    key): its unit disabled and stopped, its unit or drop-in, sysusers entry and key file removed. Only on
    this host (a snapshot of another does not say what is installed there); the system user stays."""
    from provision.plantypes import FileTarget, UnitTarget

    if not host.known:
        return
    wanted = {f[0] for f in files.files} if files is not None else set()
    if files is not None and files.key_file:
        wanted.add(files.key_file)
    runs = f"the {files.engine} server" if files is not None else "no server"
    why = f"no longer used (profile {profile_name} runs {runs})"
    for unit in MANAGED_UNITS:
        state = host.units.get(unit)
        if unit == UNIT["ollama"] or (files is not None and unit == files.unit) or state is None:
            continue  # Ollama's own unit is the vendor's: only gpuprov's drop-in goes
        if state.path is not None or state.enabled:
            desired.serving_units.append(UnitTarget(unit, False, now=True, note=f"{why}: disabled and stopped"))
    for path in MANAGED_FILES:
        state = host.files.get(path)
        if path in wanted or state is None or state.content is None:
            continue
        dirs = (str(PurePosixPath(OLLAMA_DROPIN).parent),) if path == OLLAMA_DROPIN else ()
        desired.serving_files.append(FileTarget(path, None, "0644", f"{why}: removed", dirs))
        if path == OLLAMA_DROPIN:
            desired.notes.append(
                f"{UNIT['ollama']} (Ollama's own unit) stays as its installer set it up, restarted without "
                f"gpuprov's drop-in if it runs: systemctl disable --now {UNIT['ollama']} if the GPU is for the "
                "new server alone"
            )
    for path in KEY_FILES:
        # never read (secret): removed when there; a user who cannot look into the directory is told nothing
        if path not in wanted and _exists(root, path):
            desired.serving_files.append(FileTarget(path, None, "0600", f"{why}: an API key, removed", secret=True))


def fit_notes(section: ServingSection, snapshot: Snapshot, root: Path) -> list[str]:
    """``gpuprov fit`` on the profile's model where the model is a local file or directory here."""
    from provision.errors import GpuprovError
    from provision.fit import FitRequest, fit_model, gpus_from_snapshot, read_model

    st = section.settings
    model = getattr(st, "model", None)
    if not model or not model.startswith("/") or not snapshot.gpus:
        return []
    path = root / model.lstrip("/")
    if not path.exists():
        return [f"serving model {model} is not on this host yet"]
    if isinstance(st, LlamaCppSettings) and st.n_gpu_layers == 0:
        return []
    try:
        spec = read_model(path)
        if isinstance(st, LlamaCppSettings):
            # llama-server's --ctx-size is the total over its --parallel slots (0: the trained context);
            # llama-cpp-python (venv) keeps a full-size sliding-window KV cache (llama_context_default_params)
            slots = st.parallel or 1
            total = spec.context_length if st.ctx_size == 0 else st.ctx_size
            request = FitRequest(engine="llama.cpp", context=max(total // slots, 1) if total else None,
                                 parallel=slots, kv_type=st.cache_type_k, flash_attention=st.flash_attention,
                                 swa_full=st.venv is not None)  # fmt: skip
        else:
            assert isinstance(st, VllmSettings)
            request = FitRequest(
                engine="vllm",
                context=st.max_model_len,
                parallel=st.max_num_seqs or 1,
                kv_type=st.kv_cache_dtype,
                gpu_memory_utilization=st.gpu_memory_utilization,
            )
        gpus = [g for g in gpus_from_snapshot(snapshot) if not section.gpus or g.index in section.gpus]
        result = fit_model(spec, gpus, request)
    except GpuprovError as exc:
        return [f"serving model {model}: cannot check whether it fits ({exc})"]
    if result.fits:
        return []
    return [
        f"WARNING: serving model {model} does not fit these GPUs as configured ({result.verdict.replace('_', ' ')}; "
        f"largest context that fits: {result.max_context or 'none'}): see gpuprov fit {model}"
    ]


register_section(
    "serving",
    # a profile extending another may switch engines: the parent's engine block is dropped, and its
    # port (Ollama's 11434 is no port for llama.cpp) unless the child sets one: the new engine's default.
    # Keeping the engine, the child's block merges into the parent's (serving.vllm.model alone changes
    # the model); choosing the other program (executable for venv) drops the parent's, and for
    # llama.cpp the llama-server-only parallel slots
    SectionType(parse_serving, serving_dict, exclusive=(ENGINES,), tied=("port",),
                blocks={"vllm": Block(exclusive=(("venv", "executable"),)), "ollama": Block(),
                        "llama_cpp": Block(exclusive=(("server", "venv"),), tied=("parallel",))},
                plan=_plan),
)  # fmt: skip
