"""Where gpuprov's inference-server files live on a host, and reading back what is installed there.

Imports nothing of the rest of :mod:`provision.serving` (the package's ``__init__`` is empty), so the
probe reports the installed servers without loading the profile schema and the renderer.
"""

from __future__ import annotations

from pathlib import Path

from provision.engineflags import LLAMA_CPP_ENGINE, OLLAMA_ENGINE, VLLM_ENGINE
from provision.snapshot import ServerInfo

UNIT_DIR = "/etc/systemd/system"
#: the unit (or the vendor unit a drop-in extends) per engine
UNIT = {
    VLLM_ENGINE: "gpuprov-vllm.service",
    OLLAMA_ENGINE: "ollama.service",
    LLAMA_CPP_ENGINE: "gpuprov-llama-cpp.service",
}
OLLAMA_DROPIN = f"{UNIT_DIR}/ollama.service.d/gpuprov.conf"
SYSUSERS_DIR = "/etc/sysusers.d"

#: every path and unit a serving section can make gpuprov write (what the host state reader looks at)
MANAGED_FILES = (
    f"{UNIT_DIR}/{UNIT[VLLM_ENGINE]}",
    f"{UNIT_DIR}/{UNIT[LLAMA_CPP_ENGINE]}",
    OLLAMA_DROPIN,
    f"{SYSUSERS_DIR}/gpuprov-vllm.conf",
    f"{SYSUSERS_DIR}/gpuprov-llama-cpp.conf",
)
MANAGED_UNITS = tuple(UNIT.values())


def exposure_remedy(engine: str) -> str:
    """What to do about a server other hosts can reach without an API key: the one wording that
    ``gpuprov plan`` and ``gpuprov doctor`` give (Ollama has no key: the schema refuses api_key for it)."""
    if engine == "ollama":
        return (
            "Ollama has no API key: set serving.host: 127.0.0.1 in the profile, or put a proxy with "
            "authentication in front, then gpuprov apply"
        )
    return "set serving.api_key: true (or serving.host: 127.0.0.1) in the profile and gpuprov apply"


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _values(lines: list[str], key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in lines if line.startswith(key + "=")]


def installed_servers(root: Path = Path("/")) -> list[ServerInfo]:
    """The serving units gpuprov wrote under ``root``: where each listens and whether it needs a key.
    gpuprov writes ``--host ADDRESS --port N`` unquoted (an IP address and a number)."""
    out = []
    for engine in (VLLM_ENGINE, LLAMA_CPP_ENGINE):
        lines = _lines(root / UNIT_DIR.lstrip("/") / UNIT[engine])
        if not lines:
            continue
        args = (_values(lines, "ExecStart") or [""])[0].split()
        host = args[args.index("--host") + 1] if "--host" in args[:-1] else None
        port = args[args.index("--port") + 1] if "--port" in args[:-1] else None
        keyed = bool(_values(lines, "EnvironmentFile") or _values(lines, "LoadCredential"))
        out.append(ServerInfo(UNIT[engine], engine, host, int(port) if port and port.isdigit() else None, keyed))
    lines = _lines(root / OLLAMA_DROPIN.lstrip("/"))
    if lines:
        env = dict(v.strip('"').split("=", 1) for v in _values(lines, "Environment") if "=" in v)
        address = env.get("OLLAMA_HOST", "127.0.0.1:11434")
        host, _, port = address.rpartition(":")
        out.append(
            ServerInfo(
                UNIT[OLLAMA_ENGINE],
                OLLAMA_ENGINE,
                host.strip("[]") or None,
                int(port) if port.isdigit() else None,
                False,
                engine_installed=ollama_installed(root) is not None,
            )
        )
    return out


#: Ollama is a binary with its own installer, not an environment gpuprov makes: where a user gets it
OLLAMA_DOWNLOAD = "https://ollama.com/download"


def ollama_missing(where: str = "on this host") -> str:
    """What plan (refusing) and doctor (a finding) say when Ollama is not installed ``where``."""
    return f"Ollama is not installed {where} (no ollama binary, no {UNIT[OLLAMA_ENGINE]})"


def ollama_installed(root: Path = Path("/")) -> str | None:
    """Where Ollama is installed under ``root``: its binary (:func:`provision.engines.ollama_binary`), else its
    own unit (``ollama.service``: its installer writes it to /etc/systemd/system, packages to
    /usr/lib/systemd/system). None: neither — a drop-in for ollama.service would extend nothing."""
    from provision.engines import ollama_binary
    from provision.systemd import find_unit

    return ollama_binary(root) or find_unit(UNIT[OLLAMA_ENGINE], root=root)
