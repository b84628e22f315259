"""The only hand-written name knowledge in ``prune``: facts installed metadata cannot give.

Both tables can only make a dependency *kept*, never removable.
"""

from __future__ import annotations

#: import name → distributions that provide it, used **only when none of them is installed** (then
#: ``RECORD``/``top_level.txt`` cannot answer). It upgrades "unknown (not installed)" to "used".
#: Each row: the distribution's documentation or ``top_level.txt`` of its current wheel.
UNINSTALLED_IMPORT_NAMES: dict[str, tuple[tuple[str, ...], str]] = {
    "yaml": (("pyyaml",), "PyYAML 6.0.3 wheel top_level.txt: _yaml, yaml"),
    "cv2": (
        ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"),
        "opencv-python README: 'import cv2'",
    ),
    "sklearn": (("scikit-learn",), "scikit-learn 1.5 wheel RECORD: sklearn/"),
    "PIL": (("pillow",), "Pillow 11 wheel top_level.txt: PIL"),
    "pynvml": (("nvidia-ml-py", "pynvml", "nvidia-ml-py3"), "nvidia-ml-py 13.x wheel RECORD: pynvml.py"),
    "git": (("gitpython",), "GitPython 3.1 wheel top_level.txt: git"),
    "bs4": (("beautifulsoup4",), "beautifulsoup4 4.12 wheel RECORD: bs4/"),
    "dateutil": (("python-dateutil",), "python-dateutil 2.9 wheel top_level.txt: dateutil"),
    "llama_cpp": (("llama-cpp-python",), "llama-cpp-python README: 'from llama_cpp import Llama'"),
    "whisper": (("openai-whisper",), "openai-whisper README: 'import whisper'"),
    "google.protobuf": (("protobuf",), "protobuf 5 wheel RECORD: google/protobuf/"),
}

#: distributions started at run time by something other than an import in the project's code, where
#: no metadata says so. Reported as unknown (kept), with the reason.
#: Each reason names its source.
RUNTIME_LOADED: dict[str, str] = {
    "ipykernel": "started by Jupyter through its kernel spec (python -m ipykernel_launcher), never imported",
    "tzdata": (
        "time-zone data the standard library's zoneinfo loads as package resources when the system has no "
        "tz database (Python docs, zoneinfo: 'Data sources'), never imported"
    ),
}

#: entry-point group → (the distribution that loads every plugin registered under it, source). A
#: distribution whose only plugin groups are these is used when its host is installed and kept (pytest
#: loads every ``pytest11`` plugin: requests-mock's fixture, anyio's marker), and judged like any other
#: dependency when its host is not there. Groups not listed keep the plugin as "unknown".
PLUGIN_HOSTS: dict[str, tuple[str, str]] = {
    "pytest11": ("pytest", "pytest docs, 'Writing plugins': setuptools entry points in group pytest11 are loaded"),
    "flake8.extension": ("flake8", "flake8 docs, 'Registering a plugin': entry point group flake8.extension"),
    "flake8.report": ("flake8", "flake8 docs, 'Registering a plugin': entry point group flake8.report"),
    "sphinx.html_themes": ("sphinx", "Sphinx docs, 'HTML theme development': entry point sphinx.html_themes"),
    "mkdocs.plugins": ("mkdocs", "MkDocs docs, 'Developing plugins': entry point group mkdocs.plugins"),
    "mkdocs.themes": ("mkdocs", "MkDocs docs, 'Developing themes': entry point group mkdocs.themes"),
}
