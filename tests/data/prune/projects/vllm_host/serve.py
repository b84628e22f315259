import torch
from vllm import LLM

print(torch, LLM)
