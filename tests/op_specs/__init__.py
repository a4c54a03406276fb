"""One test spec per fused op, shared by the three runners that test it.

The same op is tested on three machines' worth of backends: ``tests/test_<op>.py`` (CPU tensors: the ``eager``
and ``cpu`` backends), ``tests/triton_kernels/`` (the ``triton`` backend in Triton's interpreter on CPU tensors)
and ``tests/gpu/`` (the ``cuda`` and ``triton`` backends on CUDA tensors). What the three share lives here, once,
one module per op:

- input builders (shapes, layouts, strides, dtypes) that take the device to build on;
- the oracle: the eager function of :mod:`genad_fast.reference`;
- the cases, each with the smallest runner it is sized for (:mod:`op_specs.targets`: the interpreter runs every
  tile in numpy, so its cases are small; the GPU runner adds the benchmark's sizes);
- the tolerances per dtype and per backend, each with the reason for its size (:mod:`op_specs.compare`);
- the checks: ``check_*(target, ...)`` functions holding the assertions, run by every runner on its targets;
- float64 gradcheck inputs and ``torch.library.opcheck`` samples (``OPCHECK``: registered op name -> samples).

A runner parametrises a check over the spec's cases for its targets; runner-only checks (thread counts, a C++
header compiled on the host, CUDA graphs, scikit-learn) stay in the runner but take their tolerances from here.
``tests/test_op_specs.py`` checks that the specs cover every op and that no runner keeps a tolerance of its own.
"""
