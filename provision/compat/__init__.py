"""Which driver / CUDA / GPU / torch / vLLM / flashinfer / xformers combinations work. Pure functions over a
:class:`~provision.snapshot.Snapshot` (or a what-if :class:`~provision.compat.target.Target`) and the matrix
in ``data/compat.toml``: :func:`~provision.compat.verdict.check` (the verdict on each pair; torch in
:mod:`provision.compat.torch_check`, vLLM in :mod:`provision.compat.vllm_check`, flashinfer/xformers in
:mod:`provision.compat.attention`, the answer's types in :mod:`provision.compat.report`) and
:func:`~provision.compat.plan.plan`. The verdict on what another interpreter has installed (``compat check
--python``; the serving-stack builder's check) is :func:`~provision.compat.installed.check_environment`. The
doctor findings live in :mod:`provision.compat.findings`; the user's overlay of newer releases in
:mod:`provision.compat.overlay`; ``compat refresh`` (maintainers) in :mod:`provision.compat.refresh`.
"""
