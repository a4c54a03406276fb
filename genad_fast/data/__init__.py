"""Every data set of genad_fast, synthetic and real, and users' own tables.

- :func:`make_series`, :func:`make_tabular`: seeded synthetic series and tabular mixtures with labelled
  anomalies of known kinds (:mod:`genad_fast.data.synthetic`).
- :func:`load_kdd_tsad_135`: the one UCR anomaly archive (KDD-TSAD) series that ``aeon`` ships offline
  (the ``data`` extra: ``pip install --no-build-isolation -e '.[data]'`` from a clone); :func:`load_ucr_anomaly`
  reads any archive file a user downloaded.
- :func:`load_digits_one_class`: scikit-learn's digits as one-class tasks (Ruff et al. 2018).
- :func:`load_wdbc`, :func:`load_wine`: tabular outlier sets in the ODDS layout, from scikit-learn.
- :func:`read_table`, :func:`write_table`, :func:`select_columns`: the CSV/TSV/Parquet reader and writer that
  the CLI and the evaluation share; :func:`load_table`, :func:`load_file`: such a file with an optional label
  column, as arrays or as a task.

Everything returns the containers of :mod:`genad_fast.data.containers` (``SeriesData``, ``TabularData``),
which unpack as ``train, test, labels``. Layering: this package uses numpy, the detectors' input checks and
optional readers (pandas, scikit-learn, aeon); the CLI, the evaluation and the benchmarks use it, never the
reverse.
"""
from genad_fast.data.containers import ANOMALY_KINDS, Anomaly, SeriesData, TabularData
from genad_fast.data.files import TableError, load_file, load_table, read_table, select_columns, write_table
from genad_fast.data.synthetic import (ALL_SERIES_TYPES, SCOPES, SERIES_TYPES, TABULAR_TYPES, make_series,
                                       make_tabular)
from genad_fast.data.tabular import load_digits_one_class, load_wdbc, load_wine
from genad_fast.data.ucr import load_kdd_tsad_135, load_ucr_anomaly, parse_ucr_name

__all__ = ["ALL_SERIES_TYPES", "ANOMALY_KINDS", "Anomaly", "SCOPES", "SERIES_TYPES", "SeriesData", "TABULAR_TYPES",
           "TableError", "TabularData", "load_digits_one_class", "load_file", "load_kdd_tsad_135", "load_table",
           "load_ucr_anomaly", "load_wdbc", "load_wine", "make_series", "make_tabular", "parse_ucr_name",
           "read_table", "select_columns", "write_table"]
