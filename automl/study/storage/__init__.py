"""The storages Optuna uses, and the one door to its internals.

- :mod:`.write_behind`: a storage wrapper that batches a running trial's writes; it relies
  on ``RDBStorage`` internals through :mod:`.rows`, which writes Optuna's own tables with
  Optuna's ORM models and value encodings (``optuna.storages._rdb``).
- :mod:`.private`: Optuna's cache of finished trials (``_CachedStorage``) and the study's
  storage (``study._storage``), for reading a trial afresh and for the sweeper's reason
  on a trial whose worker is gone.
- :mod:`.history_window`: TPE on a window of the history, past 1,000 finished trials; it
  hands TPE a study whose trial readers (``Study._get_trials``) serve a snapshot.

Everything else in ``automl`` uses Optuna's public API only (``tests/unit/test_layout.py``).
"""
