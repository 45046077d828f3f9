"""The environment variables that size the numeric libraries' thread pools.

BLAS (OpenBLAS, MKL) and OpenMP read them once, when numpy first loads, so a
process pins them before that import; TensorFlow's pools are set separately
(``ml.inference.configure_threads``). Light: imports nothing but ``os``, so the
Celery app can use it before anything numeric is loaded. The shell scripts and the
Dockerfile set the same three variables for the processes they start.
"""

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_threads(count: int, *, override: bool = True) -> None:
    """Set every pool variable to ``count``; with ``override=False`` keep values already set."""
    for variable in THREAD_VARIABLES:
        if override:
            os.environ[variable] = str(count)
        else:
            os.environ.setdefault(variable, str(count))
