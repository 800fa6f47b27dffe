"""Test configuration shared by every test file.

Triton kernels are tested on CPU through Triton's interpreter. The interpreter is chosen when `triton` is first
imported, so TRITON_INTERPRET must be set here, before any test module imports a concept file.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Test tensors are tiny: one intra-op thread is faster than two (thread start-up dominates) and keeps timings
# stable when other work shares the 2-core machine. Subprocess tests (train.py) choose their own threads.
torch.set_num_threads(1)
