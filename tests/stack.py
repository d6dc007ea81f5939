"""The real stack the end-to-end tests run: bench/stack.py, shared with the benchmarks."""

from bench.stack import ADMIN_KEY, ROOT, Stack, free_port, wait_until

__all__ = ["ADMIN_KEY", "ROOT", "Stack", "free_port", "wait_until"]
