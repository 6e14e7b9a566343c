"""routerlab: the shared substrate (namespaces, OVS, daemons, traffic, reports, CLI)."""

__version__ = "0.1.0"
