"""Every import style prune must see."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

import requests
from numpy import array

from styles.helpers import double  # absolute first-party

from . import helpers  # relative: first-party

if TYPE_CHECKING:
    import h2.connection  # noqa: F401

try:
    import cv2
except ImportError:  # optional
    cv2 = None


def load(path: str) -> object:
    import yaml

    with open(path) as fh:
        return yaml.safe_load(fh)


def model() -> object:
    return importlib.import_module("sklearn.linear_model")


def proto() -> object:
    return __import__("google.protobuf")


def has_nvml() -> bool:
    return importlib.util.find_spec("pynvml") is not None


PLUGINS = ("click",)


def plugins() -> list[object]:
    return [importlib.import_module(name) for name in PLUGINS]


def use() -> object:
    return requests, array, helpers, double, cv2
