from __future__ import annotations

import pytest

from tests.integration.llama_cpp_env import LlamaCppEnv, build_env


@pytest.fixture(scope="session")
def llama_cpp_env() -> LlamaCppEnv:
    """A virtualenv with a real CPU build of llama-cpp-python[server], built by gpuprov, and the small model."""
    return build_env()
