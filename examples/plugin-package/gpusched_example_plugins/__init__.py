"""Example gpusched plugins: ``halton`` (search) and ``floor`` (stopping)."""

__all__: list[str] = []
