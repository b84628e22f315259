"""site.yml's fleet summary wherever ``ansible-playbook`` runs from: the ``gpuprov.gpu.gpuprov_fleet``
callback, loaded as a plugin next to the playbook (a collection's callback runs only when a
configuration enables it by name; this one is silent for plays that do not ask for a summary)."""

from __future__ import annotations

from ansible_collections.gpuprov.gpu.plugins.callback.gpuprov_fleet import DOCUMENTATION, CallbackModule

__all__ = ["DOCUMENTATION", "CallbackModule"]
