"""Service functions that need no service: these tests read and build bytes in
memory and touch no database, queue or storage, so the suite-wide storage
fixture (which creates the test database and bucket) is replaced by a no-op."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _bucket() -> None:
    """No object storage (nor database) is needed here."""
    return None
