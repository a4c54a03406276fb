"""Eager PyTorch versions of every op: the test oracle (plain, written for clarity)."""
