"""Where apply keeps a server's API key, and what apply will put right about a key file there."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

from provision.engineflags import LLAMA_CPP_ENGINE, VLLM_ENGINE
from provision.serving.settings import SECRETS_DIR

if TYPE_CHECKING:
    pass


def key_file(engine: str, *, env_file: bool) -> str:
    """Where apply keeps a server's API key: an environment file (``VLLM_API_KEY=``, ``API_KEY=``) or the
    bare key (llama-server's ``--api-key-file``)."""
    return f"{SECRETS_DIR}/{engine.replace('_', '-')}.{'env' if env_file else 'key'}"


#: every key file a serving section can make apply create (secret: never read into a plan)
KEY_FILES = (
    key_file(VLLM_ENGINE, env_file=True),
    key_file(LLAMA_CPP_ENGINE, env_file=True),
    key_file(LLAMA_CPP_ENGINE, env_file=False),
)

#: LoadCredential=api-key:FILE hands the root-only key file to the server's user; the unit passes
#: ``--api-key-file %d/api-key`` (``%d``: the credentials directory, systemd.unit(5) specifiers)
CREDENTIAL_NAME = "api-key"


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
