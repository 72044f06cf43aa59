"""The ``automl`` command line: one module per command group (:mod:`automl.cli.main`
builds the parser and dispatches)."""

from automl.cli.main import main

__all__ = ["main"]
