"""The commands of ``genad-fast``; :mod:`genad_fast.cli` is the program (argument parser, ``main``).

- :mod:`~genad_fast._cli.checks`: :class:`CLIError` and the checks every command runs before any work
  (output paths writable, the plot's dependencies, comma-separated lists);
- :mod:`~genad_fast._cli.params`: detector parameters from ``--param`` and options, checked at construction;
- :mod:`~genad_fast._cli.fit_score`: ``fit`` and ``score``;
- :mod:`~genad_fast._cli.many`: ``score --out-dir`` and ``fit --per-series`` over many files
  (on :mod:`genad_fast.distributed`);
- :mod:`~genad_fast._cli.evaluate`: ``eval`` (the runs themselves are :mod:`genad_fast.evaluation`'s);
- :mod:`~genad_fast._cli.info`: ``info``.

Each command is ``cmd_<name>(args) -> exit status``. Nothing here imports :mod:`genad_fast.cli` (the
program sits on top of its commands; scripts/check_imports.py checks that nothing below imports it).
"""
