"""VERB's trusted core: the voter and the replay log, free of protocol plumbing.

Everything else in `verb` (BGP sessions, netlink, daemons, faults) is untrusted plumbing
around this package; `scripts/count-trusted-lines.sh` counts its lines (the paper's trusted
code was 514 lines).
"""
from .replay import ReplayLog
from .voter import Mode, Voter, VoterConfig

__all__ = ["Mode", "ReplayLog", "Voter", "VoterConfig"]
