"""Test helpers for gpusched and for authors of gpusched plugins.

:mod:`gpusched.testing.plugin_contract` holds pytest classes that check the plugin contract;
subclass them in your own test suite (see docs/plugins.md). This package imports pytest, so only
tests should import it; the daemon never does.
"""

import pytest

# The contract's asserts live outside test modules; ask pytest to rewrite them anyway so that a
# failing check shows the values involved, not a bare AssertionError.
pytest.register_assert_rewrite("gpusched.testing.plugin_contract")

from gpusched.testing.plugin_contract import (  # noqa: E402  (must follow the rewrite hook)
    CONTRACT_SPACES,
    SearchPluginContract,
    StoppingPluginContract,
    check_value,
    rebuilt,
)

__all__ = ["CONTRACT_SPACES", "SearchPluginContract", "StoppingPluginContract", "check_value",
           "rebuilt"]
