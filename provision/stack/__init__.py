"""The serving stack: the Python environment an inference server runs from, made by gpuprov from its own
compat plan — a uv virtualenv with the compatible torch / vLLM / flashinfer set, or llama-cpp-python
built for the GPUs present — checked against the host, pruned, locked, and switched in atomically.

One module per job: :mod:`.section` (the profile's ``stack:`` section), :mod:`.spec` (what the
environment must hold: pure, from the compat plan), :mod:`.installed` (what an environment holds, from
its metadata, without running it), :mod:`.facts` (what planning reads on the host), :mod:`.planning` (the
plan's part and its row), :mod:`.record` (what gpuprov remembers: the lock file and the environments it
made), :mod:`.build` (making, checking, pruning and switching an environment), :mod:`.preview` (what an
install would fetch, without installing). This module imports none of them.
"""
