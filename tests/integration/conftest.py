import pytest

from .procs import ProcessGroup


@pytest.fixture
def procs():
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.close()


@pytest.fixture(scope="module")
def shared_cluster():
    """One 3-node cluster for a whole test module (for tests that do not disturb it)."""
    group = ProcessGroup()
    try:
        yield group.cluster(3)
    finally:
        group.close()
