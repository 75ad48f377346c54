"""The command-line flags of the test trials: ``--key=value``, ``--key value`` and ``--flag``."""


def parse_flags(args: list[str]) -> tuple[dict[str, str], set[str]]:
    """``(options, bare flags)`` from ``args`` (``sys.argv[1:]``)."""
    opts: dict[str, str] = {}
    flags: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            opts[key] = value
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            opts[arg[2:]] = args[i + 1]
            i += 1
        else:
            flags.add(arg[2:])
        i += 1
    return opts, flags
