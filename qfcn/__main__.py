"""``python -m qfcn``: the command line (see ``qfcn.cli``), after making sure the environment exists."""
import sys

from qfcn._bootstrap import ensure_environment

if __name__ == "__main__":
    ensure_environment(sys.argv[1:])
    from qfcn.cli import main

    sys.exit(main(sys.argv[1:]))
