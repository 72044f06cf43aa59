"""The storages Optuna uses, and the one door to its internals.

- :mod:`.write_behind`: a storage wrapper that batches the process's trials' writes (a
  cohort's reports, parameters and ends in a few transactions for all its members); it
  relies on ``RDBStorage`` internals through :mod:`.rows`, which writes Optuna's own
  tables with Optuna's ORM models and value encodings (``optuna.storages._rdb``), and
  serves recent reads again until it writes (:mod:`.recent_reads`).
- :mod:`.private`: Optuna's cache of finished trials (``_CachedStorage``) and the study's
  storage (``study._storage``), for reading a trial afresh and for the sweeper's reason
  on a trial whose worker is gone.
- :mod:`.history_window`: TPE on a window of the history, past 1,000 finished trials; it
  hands TPE a study whose trial readers (``Study._get_trials``) serve a snapshot, built
  from :mod:`.finished_trials` (the trials that changed since the last look,
  :mod:`.trial_cursor`);
  :mod:`.space_groups`, TPE's groups of the space (``optuna.search_space``), each finished
  trial added once.
- :mod:`.draw_ahead`: a cohort's members drawn from one TPE fit (TPE's ``_sample`` and
  acquisition function); :mod:`.tpe_log_pdf` scores their candidates under TPE's fitted
  densities by matrix products (``optuna.samplers._tpe``); :mod:`.tpe_numerics`, TPE's
  tail masses vectorised.
- :mod:`.completed_curves`: the median pruner from curves kept in memory (Optuna's
  percentile pruner's helpers).

Everything else in ``automl`` uses Optuna's public API only (``tests/unit/test_layout.py``).
"""
