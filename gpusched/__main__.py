"""`python -m gpusched`: the same as the `gpusched` script."""

import sys

from gpusched.cli import main

sys.exit(main())
