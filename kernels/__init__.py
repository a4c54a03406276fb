"""Triton kernels, installed as genad_fast.kernels. Import only where Triton runs."""
