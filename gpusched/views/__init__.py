"""What the read commands show: columns, filters and sorting (``query``), tables
(``tables``), the GPU table (``gpus``), the live view (``watch``) and the commands that use
them (``commands``). Client side only: nothing here imports the daemon."""

__all__: list[str] = []
