"""``python -m deepot_core …``: the command line (see ``deepot_core.cli``)."""
import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
