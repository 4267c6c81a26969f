"""``python -m deepot_core …``: the command line (see ``deepot_core.tooling.cli``)."""
import sys

from .tooling.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
