"""What planning a serving section looks at on the host, read once before planning (the section's
gather hook): the virtualenvs' ``pyvenv.cfg`` and this host's symlinks (the sandbox), the installed vLLM,
whether the server's program, the model, Ollama itself and its directories are there, what apply will put right
about a key file, and the model's shape for ``fit``. Planning itself (:mod:`.planning`) reads nothing."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import Version

from provision.engineflags import OLLAMA_ENGINE
from provision.engines import ollama_binary
from provision.errors import GpuprovError
from provision.serving.commandline import server_argv
from provision.serving.keyfiles import KEY_FILES, key_file_notes
from provision.serving.sandbox import SandboxFacts, read_sandbox_facts, unit_paths, unit_pythons
from provision.serving.settings import OLLAMA_HOME, LlamaCppSettings, OllamaSettings, ServingSection, VllmSettings
from provision.serving.units import UNIT
from provision.serving.vllm_versions import installed_vllm

if TYPE_CHECKING:
    from provision.fit.model import ModelSpec
    from provision.plantypes import HostState
    from provision.profiles.schema import Profile
    from provision.snapshot import Snapshot


@dataclass(frozen=True)
class ServingHost:
    """What was read on the host for a serving section (:func:`read_serving_host`, :func:`gather`)."""

    sandbox: SandboxFacts = field(default_factory=SandboxFacts)
    #: the vLLM release in the profile's environment (None: not installed, or not one version)
    vllm_version: Version | None = None
    #: path → it is there (None: it cannot be told, a root-only directory read as a user): the server's
    #: program, the model, the key files
    present: dict[str, bool | None] = field(default_factory=dict)
    #: Ollama's directories → each is a directory
    dirs: dict[str, bool] = field(default_factory=dict)
    #: an Ollama section: where Ollama is installed, its binary (:func:`provision.engines.ollama_binary`) or else
    #: its own ollama.service (the host's unit state); None: neither, and planning refuses (a drop-in for nothing)
    ollama: str | None = None
    #: key file → what apply will put right about it (:func:`provision.serving.keyfiles.key_file_notes`)
    key_notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: the model's shape (``gpuprov fit``), or why it could not be read; both None: not looked at
    model: ModelSpec | None = None
    model_error: str | None = None


def read_serving_host(section: ServingSection, python: str, root: Path) -> ServingHost:
    """What rendering the section's files needs: the sandbox's paths and the installed vLLM."""
    sandbox = read_sandbox_facts(unit_pythons(section, python), [], root)
    _, readable, writable = unit_paths(section, python, sandbox)
    sandbox = sandbox.merged(read_sandbox_facts([], [*readable, *writable], root))
    st = section.settings
    return ServingHost(sandbox, installed_vllm(st, root) if isinstance(st, VllmSettings) else None)


def _present(root: Path, path: str) -> bool | None:
    try:
        return (root / path.lstrip("/")).exists()
    except OSError:
        return None


def _local_model(section: ServingSection) -> str | None:
    """The model when it is a local path (``fit`` reads it unless llama.cpp offloads no layer to the GPU)."""
    st = section.settings
    model = st.model if isinstance(st, VllmSettings | LlamaCppSettings) else None
    return model if model and model.startswith("/") else None


def gather(profile: Profile, snapshot: Snapshot, host: HostState) -> HostState:
    """The serving section's gather hook: ``host`` with what planning the section reads. Key files are
    looked at with or without a section (an earlier profile's key is removed)."""
    root = Path(host.root)
    present = {path: _present(root, path) for path in KEY_FILES} if host.known else {}
    key_notes = {path: tuple(key_file_notes(path, root)) for path in KEY_FILES} if host.known else {}
    section = profile.sections.get("serving")
    if section is None:
        return replace(host, serving=ServingHost(present=present, key_notes=key_notes))
    served = read_serving_host(section, host.python, root)
    dirs = {}
    if section.engine != "ollama":
        program = server_argv(section)[0]
        present[program] = _present(root, program)
    st = section.settings
    ollama = None
    if isinstance(st, OllamaSettings):
        vendor = host.units.get(UNIT[OLLAMA_ENGINE])  # read with the other units (provision.hoststate)
        ollama = ollama_binary(root) or (vendor.path if vendor is not None else None)
        for path in (OLLAMA_HOME, st.models_dir):
            if path:
                dirs[path] = (root / path.lstrip("/")).is_dir()
    model, model_error = None, None
    path = _local_model(section)
    if path is not None:
        present[path] = (root / path.lstrip("/")).exists()
        no_offload = isinstance(st, LlamaCppSettings) and st.n_gpu_layers == 0
        if present[path] and snapshot.gpus and not no_offload:
            from provision.fit import read_model

            try:
                model = read_model(root / path.lstrip("/"))
            except GpuprovError as exc:
                model_error = str(exc)
    facts = replace(
        served, present=present, dirs=dirs, ollama=ollama, key_notes=key_notes, model=model, model_error=model_error
    )
    assert host.sandbox is not None  # gather_sections reads the boot unit's sandbox before any gather hook
    return replace(host, serving=facts, sandbox=host.sandbox.merged(served.sandbox))
