"""Aggregation and reporting of final-stage results: tables, win matrices, ranks, statistics, plots.

Split by responsibility so each module stays small; ``orchestrator.report`` is the entry point
(``write_report`` and the CLI) and re-exports what callers need.
"""
