"""Tiny configurations for the model library's tests."""

from __future__ import annotations

import torch

# Tiny networks spend their time in per-op overhead: one thread avoids
# contention on small machines and keeps timings steady.
torch.set_num_threads(1)
