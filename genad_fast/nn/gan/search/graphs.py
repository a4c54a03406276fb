"""CUDA graphs for the segments of the latent search (:func:`~genad_fast.nn.gan.search.latent_search`).

Between two checks an iteration has static shapes, makes no host–device synchronisation (no ``.item()``,
``.cpu()``, ``nonzero()`` and no Python branch on tensor values) and allocates nothing on the hand-written
path, so the ``check_every`` iterations of a segment can be captured in a CUDA graph and replayed;
``cuda_graph=True`` does that on CUDA tensors (one graph per working-set size, recaptured after a
compaction), provided the fused ops' CUDA kernels are capturable too. This path could not be run on the
machines this library was written on (no GPU): it is written for capture, not tested under it.
"""
from __future__ import annotations

import torch

__all__: list[str] = []


class _GraphRunner:
    """Runs segments through CUDA graphs, one per (working-set size, segment length, check) (untested here).

    The first segment of each shape runs eagerly on a side stream (warm-up: cuBLAS workspaces, autograd
    state), the next one is captured and every later one replays it. The working set's tensors are the
    graph's static inputs and outputs; a compaction makes a new working set and so a new capture.
    """

    def __init__(self, segment):
        self.segment = segment
        self.ws = None                  # the working set the graphs belong to
        self.graphs: dict = {}
        self.warm: set = set()

    def run(self, ws, n_iter: int, with_check: bool) -> None:
        if ws is not self.ws:           # a new working set: the old graphs point at its predecessor's memory
            self.ws, self.graphs, self.warm = ws, {}, set()
        key = (n_iter, with_check)
        graph = self.graphs.get(key)
        if graph is not None:
            graph.replay()
            return
        if key not in self.warm:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self.segment(ws, n_iter, with_check)
            torch.cuda.current_stream().wait_stream(stream)
            self.warm.add(key)
            return
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.segment(ws, n_iter, with_check)
        graph.replay()                  # capture records the work; replay does it
        self.graphs[key] = graph
