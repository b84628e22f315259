"""The one renderer for ``templates/*.j2``: previews (``plan --diff``), the Ansible modules and the
tests all render through :func:`render`, so what a preview shows is byte for byte what Ansible writes.

The Jinja2 environment is fixed here and nowhere else: StrictUndefined (a missing variable is an
error, never an empty string), ``trim_blocks``/``lstrip_blocks`` on, a trailing newline kept, no
autoescaping (these are config files, not HTML). Ansible's ``template`` module is deliberately not
used: its defaults and filters differ, and two renderers drift.
"""

from __future__ import annotations

import json
import shlex
import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from provision.errors import GpuprovError


class RenderError(GpuprovError):
    """A template that cannot be rendered (missing template or variable): a gpuprov bug or a bad value."""


def templates_dir() -> Path:
    """``templates/``: packaged next to the code in a wheel (provision/_templates), else the repo's."""
    here = Path(__file__).resolve().parent
    packaged = here / "_templates"
    return packaged if packaged.is_dir() else here.parent / "templates"


def _breaks_lines(text: str) -> bool:
    """Control characters (newline, CR, NUL, tab, NEL...) and Unicode line/paragraph separators: refused
    in unit values rather than escaped, since line-based tools split on several of them."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def _systemd_quote(value: Any) -> str:
    """One argument of an ``ExecStart=`` line, quoted for systemd's own command-line syntax."""
    text = str(value)
    if _breaks_lines(text):
        raise RenderError(f"{text!r}: a newline or control character cannot appear in a systemd command line")
    # systemd expands %-specifiers and $VARIABLES in ExecStart=: double them to keep them literal
    text = text.replace("%", "%%").replace("$", "$$")
    if text and all(c.isalnum() or c in "-_./=:,+@" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemd_env(assignment: Any) -> str:
    """One ``Environment=`` assignment ``KEY=value``, quoted: systemd expands %-specifiers there, not $."""
    text = str(assignment)
    if _breaks_lines(text):
        raise RenderError(f"{text!r}: a newline or control character cannot appear in a systemd environment value")
    key = text.partition("=")[0]
    if not key or not (key[0].isalpha() or key[0] == "_") or not all(c.isalnum() or c == "_" for c in key):
        raise RenderError(f"{key!r} is not an environment variable name")
    return '"' + text.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"') + '"'


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["systemd_quote"] = _systemd_quote
    env.filters["systemd_env"] = _systemd_env
    env.filters["shell_quote"] = shlex.quote
    env.filters["to_json"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    return env


def render(template: str, variables: dict[str, Any]) -> str:
    """Render ``templates/<template>`` with ``variables``; raises RenderError, never an empty value."""
    try:
        return environment().get_template(template).render(**variables)
    except jinja2.TemplateNotFound:
        raise RenderError(f"template {template!r} not found in {templates_dir()}") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template {template}: {exc.message}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"template {template} line {exc.lineno}: {exc.message}") from None
