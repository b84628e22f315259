import pytest


def test_client() -> None:
    pytest.importorskip("httpx")
