"""Which driver / CUDA / GPU / torch / vLLM / flashinfer / xformers combinations work.

Pure functions over a :class:`~provision.snapshot.Snapshot` (or a what-if
:class:`~provision.compat.target.Target`) and the matrix in ``data/compat.toml``:
:func:`~provision.compat.verdict.check` (the verdict on each pair) and :func:`~provision.compat.plan.plan`. The
doctor findings live in :mod:`provision.compat.findings`; ``compat refresh`` (maintainers) in
:mod:`provision.compat.refresh`.
"""
