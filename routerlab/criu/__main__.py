"""``python -m routerlab.criu {features,selftest}`` (see `routerlab.criu.cli`)."""
import sys

from routerlab.criu.cli import main

sys.exit(main())
