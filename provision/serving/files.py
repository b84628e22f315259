"""The files apply writes for a serving section — a unit or drop-in, a sysusers.d entry for the server's
own non-login user, the key file's name — rendered by :func:`provision.render.render`, the one renderer
that ``plan --diff``, ``render`` and the Ansible role share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provision import engineflags
from provision.render import render
from provision.serving.commandline import server_argv, wait_gpu_argv
from provision.serving.facts import ServingHost, read_serving_host
from provision.serving.keyfiles import CREDENTIAL_NAME, key_file
from provision.serving.sandbox import (
    GPUPROV_TMP_REMEDY,
    _needs_visible,
    private_tmp_refusal,
    unit_paths,
)
from provision.serving.settings import (
    _PLAIN_PATH,
    PLACEHOLDER_KEY,
    START_TIMEOUT_S,
    USER,
    WAIT_GPU_S,
    LlamaCppSettings,
    OllamaSettings,
    ServingError,
    ServingSection,
    VllmSettings,
)
from provision.serving.units import OLLAMA_DROPIN, SYSUSERS_DIR, UNIT_DIR, exposure_remedy
from provision.serving.vllm_versions import vllm_args

if TYPE_CHECKING:
    pass


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


def serving_files(
    profile_name: str,
    s: ServingSection,
    *,
    python: str,
    root: Path = Path("/"),
    host: ServingHost | None = None,
) -> ServingFiles:
    """Every file the section asks for, rendered. ``python``: the interpreter ExecStartPre runs gpuprov
    with; ``host``: what was read on the host (:func:`provision.serving.facts.read_serving_host`: the
    installed vLLM, the virtualenvs' ``pyvenv.cfg``, symlinks); None: read it now under ``root``."""
    if not python.startswith("/") or not _PLAIN_PATH.match(python):
        raise ServingError(f"{python!r}: the interpreter the units run gpuprov with must be a plain absolute path")
    if host is None:
        host = read_serving_host(s, python, root)
    sandbox = host.sandbox
    engine = s.engine
    user = USER[engine]
    own, readable, writable = unit_paths(s, python, sandbox)
    env = engineflags.gpu_env(s.gpus)
    key_env = None
    files = ServingFiles(engine, s.unit)
    st = s.settings
    vllm_version = None
    if isinstance(st, VllmSettings):
        vllm_version = host.vllm_version
        gated = vllm_args(st, vllm_version)
        env += gated.environment
        files.notes += gated.notes
        env += [
            ("HF_HOME", f"/var/cache/{user}/huggingface"),
            ("VLLM_CACHE_ROOT", f"/var/cache/{user}/vllm"),
            ("XDG_CACHE_HOME", f"/var/cache/{user}"),
            ("VLLM_NO_USAGE_STATS", "1"),
            ("DO_NOT_TRACK", "1"),
        ]
        key_env = "VLLM_API_KEY"
    elif isinstance(st, LlamaCppSettings):
        if st.venv:
            key_env = "API_KEY"  # llama_cpp.server reads its settings from the environment
        env += [("XDG_CACHE_HOME", f"/var/cache/{user}")]
    else:
        assert isinstance(st, OllamaSettings)
        env += engineflags.ollama_env(st, s.host, s.port)
    # an image tree (no realpaths) runs its own gpuprov
    hidden = sandbox.private_tmp_hidden(own) if sandbox.realpaths is not None else []
    if hidden:
        files.refusals.append(
            private_tmp_refusal(files.unit, hidden, "gpuprov's interpreter or package", GPUPROV_TMP_REMEDY)
        )
    hidden = sandbox.private_tmp_hidden([p for p in readable[len(own) :] + writable if p not in own])
    if hidden:
        files.refusals.append(
            private_tmp_refusal(files.unit, hidden, f"serving.{engine}'s", "move it out of them (e.g. to /opt or /srv)")
        )
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
            (
                sysusers,
                render(
                    "gpuprov-serving.sysusers.j2",
                    {"user": user, "profile": profile_name, "home": f"/var/lib/{name}", "engine": engine},
                ),
                "0644",
                f"the {user} system user (no login)",
            )
        )
    if not s.loopback:
        if s.api_key:
            files.notes.append(f"{engine} listens on {s.host}:{s.port}, reachable from other hosts (API key required)")
        else:
            files.notes.append(
                f"WARNING: {engine} listens on {s.host}:{s.port} without an API key: anyone who can reach this "
                f"host can use it; {exposure_remedy(engine)}"
            )
    return files


def placeholder_key_file(files: ServingFiles) -> tuple[str, str] | None:
    """``gpuprov render``: the key file with a placeholder instead of a secret."""
    if files.key_file is None:
        return None
    return files.key_file, files.key_content(PLACEHOLDER_KEY)
