"""Scale-out: engines for many series (Ray, Dask) and data-parallel training (torchrun DDP)."""
