"""The worker side of automl: MLP builder, training loop, Optuna glue and Ray runtime.

Depends on :mod:`automl`, never the reverse (``automl`` reaches the default executor in
:mod:`workers.ray_executor` through a lazy import at its entry point only).
"""
