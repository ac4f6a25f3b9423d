import pytest

from .procs import ProcessGroup


@pytest.fixture
def procs():
    group = ProcessGroup()
    try:
        yield group
    finally:
        group.close()
