"""Tuning profiles: named, validated descriptions of what a tuned host looks like.

``load_profile(name)`` resolves a profile (built-in, ``/etc/gpuprov/profiles/``,
``~/.config/gpuprov/profiles/``, with ``extends:``); ``profile_set().load_all()`` lists them.
"""

from provision.profiles.loader import ProfileSet, default_dirs, load_profile, parse_text, profile_set
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
    "ProfileSet",
    "SectionType",
    "SuspendSection",
    "default_dirs",
    "load_profile",
    "parse_text",
    "profile_set",
    "register_section",
]

# sections that live with the capability they describe register themselves on import
from provision import llama_build as _llama_build  # noqa: F401  (the llama_cpp section)
from provision import serving as _serving  # noqa: F401  (the serving section)
