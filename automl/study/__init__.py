"""The Optuna side: study settings, sampler and pruner, warm start, trials read back,
and the storages (:mod:`automl.study.storage`), the one door to Optuna's internals."""
