"""routerlab: the shared substrate (namespaces, OVS, daemons, traffic, reports, CLI)."""
import logging

__version__ = "0.1.0"


def _keep_standard_loggers() -> None:
    """Mininet's log module makes every logger created after its import a MininetLogger with
    its own stderr handler, so each warning of ours would print twice (once without a
    newline). Import it first, here, and put the standard logger class back; Mininet's own
    messages keep its handler and do not also reach ours."""
    try:
        import mininet.log
    except ImportError:  # unit tests and `routerlab te` work without Mininet
        return
    logging.setLoggerClass(logging.Logger)
    mininet.log.lg.propagate = False


_keep_standard_loggers()
