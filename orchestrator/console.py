"""What a user's terminal shows during a sweep: one line per stage, not library banners.

Ray's start-up lines, MLflow's database migrations (alembic) and their INFO chatter are hidden
unless ``--verbose``; the sweep's own stage lines (``orchestrator.*``) and every library's
warnings and errors still show.
"""

from __future__ import annotations

import logging
import os

#: Loggers whose INFO lines are banners, not stages.
LIBRARIES: tuple[str, ...] = (
    "alembic",
    "mlflow",
    "ray",
    "filelock",
    "urllib3",
    "botocore",
    "optuna",
)


def quiet_libraries(verbose: bool) -> None:
    """Raise library loggers to WARNING (and MLflow's own level, read when it is imported)."""
    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # Ray Tune's newer console output prints a "Configuration for experiment" box (with
    # "Number of trials 9223372036854775807") and its results path even at verbose=0; its
    # classic reporter at verbose=0 prints nothing. Read by Tune when a run starts.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
