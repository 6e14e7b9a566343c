"""VERB (Keller et al., CoNEXT 2009): a bug-tolerant router made of diverse replicas.

- `verb.core`: the trusted voting core (voter, replay log), free of protocol plumbing;
- `verb.bgp`, `verb.session`, `verb.interposer`: BGP messages, sessions, the socket-level
  interposer that terminates neighbours' sessions and holds one session per replica;
- `verb.fib`: the replicas' candidate FIBs and the real FIB; `verb.replica`: replicas and
  the replica manager (recovery); `verb.router`: the router; `verb.hvproc`: the same as its
  own process; `verb.faults`: bug injection; `verb.experiments`: `routerlab run verb-*`.
See verb/STATUS.md.
"""
