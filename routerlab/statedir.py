"""Where routerlab keeps its state (sessions, run directories, caches, ssh control sockets):
``/run/routerlab``, or ``$ROUTERLAB_STATE_DIR`` for a private state (the tests', a user's
parallel runs). A module of its own, importing nothing of routerlab, so that every module
can read it (the registry imports ssh, and criu must import without psutil)."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STATE_DIR = Path("/run/routerlab")
STATE_DIR = Path(os.environ.get("ROUTERLAB_STATE_DIR", DEFAULT_STATE_DIR))
