"""Tuning profiles: named, validated descriptions of what a tuned host looks like.

:mod:`provision.profiles.schema`: the profile types and the section registry (``register_section``),
re-exported here; it imports nothing of the capabilities whose sections it holds.
:mod:`provision.profiles.loader`: ``load_profile(name)`` resolves a profile (built-in,
``/etc/gpuprov/profiles/``, ``~/.config/gpuprov/profiles/``, with ``extends:``); ``profile_set().load_all()``
lists them. The loader imports the capability modules that register their sections (serving, llama_cpp).
"""

from provision.profiles.schema import (
    SECTIONS,
    GpuSection,
    Match,
    Profile,
    ProfileError,
    SectionType,
    SuspendSection,
    register_section,
)

__all__ = [
    "SECTIONS",
    "GpuSection",
    "Match",
    "Profile",
    "ProfileError",
    "SectionType",
    "SuspendSection",
    "register_section",
]
