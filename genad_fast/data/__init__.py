"""Real data sets, read from packages that ship them, and users' own files.

- :func:`load_kdd_tsad_135`: the one UCR anomaly archive (KDD-TSAD) series that ``aeon`` ships offline
  (``pip install genad-fast[data]``); :func:`load_ucr_anomaly` reads any archive file a user downloaded.
- :func:`load_digits_one_class`: scikit-learn's digits as one-class tasks (Ruff et al. 2018).
- :func:`load_wdbc`, :func:`load_wine`: tabular outlier sets in the ODDS layout, from scikit-learn.
- :func:`load_table`, :func:`load_file`: a CSV/TSV/Parquet file with an optional label column.

Everything returns the containers of :mod:`genad_fast.datasets` (``SeriesData``, ``TabularData``),
which unpack as ``train, test, labels``.
"""
from genad_fast.data.files import load_file, load_table
from genad_fast.data.tabular import load_digits_one_class, load_wdbc, load_wine
from genad_fast.data.ucr import load_kdd_tsad_135, load_ucr_anomaly, parse_ucr_name

__all__ = ["load_digits_one_class", "load_file", "load_kdd_tsad_135", "load_table", "load_ucr_anomaly",
           "load_wdbc", "load_wine", "parse_ucr_name"]
