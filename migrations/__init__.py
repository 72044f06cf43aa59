"""Alembic migrations of the service's own tables (``automl_*``); Optuna migrates its own."""
