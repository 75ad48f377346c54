"""Socket activation's checks (sd_listen_fds(3)): whose variables, how many sockets."""

from __future__ import annotations

import os

import pytest

from gpusched._daemon.activation import take_activated_socket
from gpusched.errors import ConfigError


def test_variables_meant_for_another_process_are_cleared_and_ignored() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x", "PATH": "/bin"}
    assert take_activated_socket(env) is None
    assert env == {"PATH": "/bin"}  # no trial may inherit them
    assert take_activated_socket({}) is None


def test_more_than_one_socket_is_a_clear_error() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}
    with pytest.raises(ConfigError, match="exactly one socket"):
        take_activated_socket(env)
