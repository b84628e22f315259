"""What the gpuprov.gpu modules share: the gpuprov library on the managed host, of this collection's version.

The modules are thin front doors to the ``provision`` package (the same code as the ``gpuprov`` command);
a module of one version driving a library of another would pass arguments the library reads differently,
so each module checks the version first and fails with one line saying what to install.
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

#: gpuprov's version this collection was built with (galaxy.yml's version; pyproject's, provision.__version__)
COLLECTION_VERSION = "0.1.0"


def require_library(module: AnsibleModule) -> None:
    """Fail the module unless ``provision`` imports and is :data:`COLLECTION_VERSION`."""
    try:
        import provision
    except ImportError:
        module.fail_json(msg=missing_required_lib("gpuprov (the provision package)"))
        return
    version = getattr(provision, "__version__", "unknown")
    if version != COLLECTION_VERSION:
        module.fail_json(
            msg=(
                f"the gpuprov library on this host is version {version}, the gpuprov.gpu collection is "
                f"{COLLECTION_VERSION}: install gpuprov {COLLECTION_VERSION} on the host (the gpuprov_host role "
                "does), or run the collection that came with the host's gpuprov"
            )
        )
