"""``gpuprov prune``: find declared dependencies a project never uses, prove removing them is safe,
and remove them the way the project manages its environment.

* :mod:`~provision.prune.declared` — what the project declares (PEP 621, extras, PEP 735, requirements files)
* :mod:`~provision.prune.sourcetree` — which files are its Python source; :mod:`~provision.prune.sourcescan` —
  what one file imports (``ast``); :mod:`~provision.prune.imports` — the whole project's, cached;
  :mod:`~provision.prune.mentions` — other uses (commands, tool configs, prose); :mod:`~provision.prune.uses` —
  where each distribution is used
* :mod:`~provision.prune.installed` — the environment's metadata (:func:`provision.pyenv.collect_distributions`)
* :mod:`~provision.prune.scancache` — per-file scan results and the target's metadata kept between runs
* :mod:`~provision.prune.reportcache` — the whole report of an unchanged project, served to a re-run
* :mod:`~provision.prune.graph` — ``Requires-Dist`` walk with markers; :mod:`~provision.prune.analysis` — verdicts
* :mod:`~provision.prune.removal` — ``--apply``: back up (:mod:`~provision.prune.backup`), remove, verify
  (:mod:`~provision.prune.verify`), roll back
"""
