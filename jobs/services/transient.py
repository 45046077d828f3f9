"""Errors worth trying again: a dependency that did not answer, never a bug or bad input.

Ingest and analysis give their work back on these instead of failing
recordings, and the tasks retry them with backoff (workers.tasks.RETRY).
"""

from django.db import InterfaceError, OperationalError
from psycopg2.extensions import TransactionRollbackError

from jobs.storage import StorageUnavailable

# Failures of the database, not of the recordings: a lost or reset connection,
# a cancelled statement, a deadlock or a serialization failure (SQLSTATE class
# 40, which Django raises as OperationalError; the driver's own class catches it
# where it comes unwrapped).
DATABASE_ERRORS = (OperationalError, InterfaceError, TransactionRollbackError)
# Object storage or the database.
DEPENDENCY_ERRORS = (StorageUnavailable, *DATABASE_ERRORS)
# What a task retries: those, and a connection to the broker.
RETRIED_ERRORS = (*DEPENDENCY_ERRORS, ConnectionError)
