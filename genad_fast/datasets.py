"""Seeded synthetic data and the real-data loaders, under their original name.

The data sets live in the package :mod:`genad_fast.data` (synthetic generators, real data, table
reading); this module re-exports its public names so that ``from genad_fast.datasets import make_series``
and ``genad_fast.datasets.load_kdd_tsad_135`` keep working. New code imports :mod:`genad_fast.data`.
"""
from genad_fast.data import (ALL_SERIES_TYPES, ANOMALY_KINDS, SCOPES, SERIES_TYPES, TABULAR_TYPES, Anomaly,
                             SeriesData, TabularData, load_digits_one_class, load_file, load_kdd_tsad_135,
                             load_table, load_ucr_anomaly, load_wdbc, load_wine, make_series, make_tabular)

__all__ = ["Anomaly", "SeriesData", "TabularData", "make_series", "make_tabular", "ANOMALY_KINDS",
           "SERIES_TYPES", "ALL_SERIES_TYPES", "SCOPES"]
