"""A run from submission to its stored result: plan (tickets), submit, tune (serve a run
from this process), the workers' runtime, progress, and the finished summary."""
