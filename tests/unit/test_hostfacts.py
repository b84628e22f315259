from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provision import hostfacts

OPEN = (
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  "
    "(dvs-builder@U16-I3-B03-4-3)  Thu Oct 16 18:15:49 UTC 2026\nGCC version:  gcc version 13.3.0\n"
)
PROPRIETARY = (
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
    "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n"
)
AARCH64 = "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  570.124.06  Release Build  (dvs-builder@U16)\n"


@pytest.mark.parametrize(
    "text, expect",
    [
        (OPEN, ("580.159.04", "open")),
        (PROPRIETARY, ("535.183.01", "proprietary")),
        (AARCH64, ("570.124.06", "open")),
        ("", (None, None)),
        ("garbage\n", (None, None)),
    ],
)
def test_parse_nvrm_version(text, expect):
    assert hostfacts.parse_nvrm_version(text) == expect


@given(st.text())
def test_parse_nvrm_version_never_raises(text):
    hostfacts.parse_nvrm_version(text)


def _tree(tmp_path):
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text(OPEN)
    (tmp_path / "proc/1").mkdir()
    (tmp_path / "proc/1/comm").write_text("systemd\n")
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    (tmp_path / "proc/812").mkdir()
    (tmp_path / "proc/812/comm").write_text("nvidia-persiste\n")  # comm is cut to 15 characters
    (tmp_path / "proc/900").mkdir()
    (tmp_path / "proc/900/comm").write_text("Xorg\n")
    (tmp_path / "proc/cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: AMD Ryzen 9 7950X 16-Core Processor\n\n"
        "processor\t: 1\nmodel name\t: AMD Ryzen 9 7950X 16-Core Processor\n"
    )
    (tmp_path / "proc/meminfo").write_text("MemTotal:       65536000 kB\nMemFree:        1000 kB\n")
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("6.8.0-45-generic\n")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/os-release").write_text('NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 24.04.1 LTS"\n')
    (tmp_path / "etc/hostname").write_text("box\n")
    (tmp_path / "sys/class/dmi/id").mkdir(parents=True)
    (tmp_path / "sys/class/dmi/id/chassis_type").write_text("10\n")
    lib = tmp_path / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    (lib / "libnvidia-ml.so.580.159.04").write_bytes(b"")
    (lib / "libnvidia-ml.so.1").symlink_to("libnvidia-ml.so.580.159.04")
    return tmp_path


def test_read_host_from_a_tree(tmp_path):
    host = hostfacts.read_host(root=_tree(tmp_path))
    assert host.hostname == "box"
    assert host.kernel == "6.8.0-45-generic"
    assert host.distro == "Ubuntu 24.04.1 LTS"
    assert host.cpu_model == "AMD Ryzen 9 7950X 16-Core Processor"
    assert host.cpu_cores == 2
    assert host.ram_mib == 64000
    assert host.systemd_pid1 is True
    assert host.graphical_session is True
    assert host.laptop is True


def test_read_host_on_an_empty_tree(tmp_path):
    host = hostfacts.read_host(root=tmp_path)
    assert host.systemd_pid1 is False and host.laptop is None and host.ram_mib is None


def test_driver_files_and_persistenced(tmp_path):
    root = _tree(tmp_path)
    info = hostfacts.read_driver_files(root=root)
    assert (info.kernel_module_version, info.kernel_module_flavor) == ("580.159.04", "open")
    assert info.nvml_library_version == "580.159.04"
    assert hostfacts.process_running("nvidia-persistenced", root=root)
    assert not hostfacts.process_running("ollama", root=root)


def test_this_machine_has_no_nvidia_driver_files():
    info = hostfacts.read_driver_files()
    assert info.kernel_module_version is None or info.kernel_module_flavor in ("open", "proprietary")
