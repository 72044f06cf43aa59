"""The service's own tables (prefixed ``automl_``), their queries and the schema upgrade.

Optuna owns trial data in its own tables; these tables hold datasets, runs, work tickets,
baselines and the best model. All SQL lives in :mod:`automl.queue.queries`.
"""
