"""Sub-commands of ``automl`` that live in their own modules (see ``automl.cli``)."""
