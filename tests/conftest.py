"""Test configuration shared by every test file.

Triton kernels are tested on CPU through Triton's interpreter. The interpreter is chosen when `triton` is first
imported, so TRITON_INTERPRET must be set here, before any test module imports a concept file.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Two cores on the dev/CI machines: keep intra-op threads modest so parallel helpers do not thrash.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
