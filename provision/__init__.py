"""gpuprov: provision, verify and tune Linux hosts with NVIDIA GPUs for local LLM inference."""

__version__ = "0.1.0"
