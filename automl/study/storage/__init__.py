"""The storages Optuna uses, and the one door to its internals.

- :mod:`.write_behind`: a storage wrapper that batches a running trial's writes; it relies
  on ``RDBStorage`` internals through :mod:`.rows`, which writes Optuna's own tables with
  Optuna's ORM models and value encodings (``optuna.storages._rdb``).
- :mod:`.private`: Optuna's cache of finished trials (``_CachedStorage``) and the study's
  storage (``study._storage``), for reading a trial afresh and for the sweeper's reason
  on a trial whose worker is gone.

Everything else in ``automl`` uses Optuna's public API only (``tests/unit/test_layout.py``).
"""
