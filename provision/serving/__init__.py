"""Inference servers as hardened systemd services: the profile's ``serving`` section and the files apply
writes for it. One module per job: :mod:`.settings` (the section's types), :mod:`.section` (reading it),
:mod:`.vllm_versions` (options gated on the installed vLLM), :mod:`.commandline` (the servers' argv),
:mod:`.sandbox` (what a unit's sandbox must show), :mod:`.keyfiles` (API key files), :mod:`.files` (the
rendered files), :mod:`.units` (where they live; what is installed), :mod:`.planning` (the plan's part).
This module imports none of them.
"""
