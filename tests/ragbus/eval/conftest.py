"""The end-to-end evaluation test runs on the e2e suite's stack of real service processes."""

from tests.e2e.conftest import stack  # noqa: F401  (re-exported fixture)
