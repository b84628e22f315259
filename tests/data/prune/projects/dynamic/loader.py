import importlib
import sys


def load(name: str) -> object:
    return importlib.import_module(name)


load(sys.argv[1])
