"""Test doubles that stand in for hardware and foreign libraries (a fake ``pynvml``)."""
