"""Property: whatever a profile file contains, the loader raises nothing but its own ProfileError."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.profiles import ProfileError
from provision.profiles.loader import ProfileSet, builtin_dir
from provision.profiles.schema import HEADER_KEYS, SECTIONS

KEYS = st.sampled_from(
    [
        *HEADER_KEYS,
        *SECTIONS,
        "power_limit_w",
        "power_limit_percent",
        "persistence",
        "power_limit_fallback",
        "locked_clocks_mhz",
        "preserve_video_memory",
        "gpu_names",
        "compute_capabilities",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["rtx4090", "8.9", "h100", "datacenter", "self"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
DOCS = st.dictionaries(KEYS, VALUES, max_size=6)


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        user = Path(tmp) / "user"
        user.mkdir()
        (user / "self.yaml").write_text(text, encoding="utf-8")
        ps = ProfileSet([builtin_dir(), Path(tmp) / "none", user])
        try:
            ps.load("self")
        except ProfileError as exc:
            assert str(exc).startswith(str(user / "self.yaml")) or "no profile named" in str(exc)
        ps.load_all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_any_structure_raises_only_profile_error(doc: dict) -> None:
    _load(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_raises_only_profile_error(text: str) -> None:
    _load(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_any_bytes_raise_only_profile_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "self.yaml").write_bytes(data)
        with contextlib.suppress(ProfileError):
            ProfileSet([builtin_dir(), Path(tmp)]).load("self")
