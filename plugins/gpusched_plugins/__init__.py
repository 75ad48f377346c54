"""gpusched's built-in search and stopping plugins.

They are registered in gpusched's own pyproject under the entry-point groups ``gpusched.search``
(``random``, ``grid``) and ``gpusched.stopping`` (``bounds``), exactly as a third-party package
registers its own, and they import nothing of gpusched but :mod:`gpusched.plugin_api`. Nothing is
exported here on purpose: the daemon finds these classes through their entry points only.
"""
