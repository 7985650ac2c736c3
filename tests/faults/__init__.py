import pytest

# The checks live in helper modules: let pytest explain their failed asserts as in a test.
pytest.register_assert_rewrite("tests.faults.audit", "tests.faults.cluster", "tests.faults.groups")
