"""Worker processes that each accept their own share of the connections.

uvicorn's workers share one listening socket: whichever worker wakes first accepts a whole
burst of new connections, and keep-alive clients (a load balancer, PgBouncer-style proxies,
wrk) stay where they landed. Measured here, wrk's 32 connections over 2 workers split 5/27,
11/21, 12/20, 15/17 from one run to the next; at 5/27 one worker saturates its core while the
other idles (GET /products: 2,831 rps at 5/27, 3,324 at 12/20). With a listening socket of its
own per worker, bound with SO_REUSEPORT, the kernel spreads new connections over the workers
by a hash of their addresses.

uvicorn's supervisor (health checks, restarts, signals) stays in charge. It hands every worker
the parent's socket by pickling it; this socket pickles as "bind a new SO_REUSEPORT socket to
my address", so each worker unpickles one of its own. The parent's socket holds the port but
never listens, so the kernel routes nothing to it.

A worker that ends (it died and was replaced, or SIGHUP or SIGTTOU retired it) takes its live
gauges with it (``forget_ended``); its counters stay in the sum.

SO_REUSEPORT lets any process of the same user bind and listen on the port too: a second
server started on it by mistake (an old version left running, a second deploy) would take a
share of the connections, silently. So ``serve`` first binds a plain socket there
(``check_free``), which fails while anything listens on the port.
"""

import logging
import os
import socket
from typing import Any

import uvicorn
from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

log = logging.getLogger("uvicorn.error")


class ReusePortSocket(socket.socket):
    def __reduce__(self) -> tuple[Any, ...]:
        return (reuse_port_socket, (self.family, self.getsockname()))


def reuse_port_socket(family: socket.AddressFamily, address: Any) -> ReusePortSocket:
    sock = ReusePortSocket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_free(host: str, port: int) -> None:
    """Raise OSError (EADDRINUSE) when a server listens on ``host:port``: a socket without
    SO_REUSEPORT binds as uvicorn's own would, refused while any socket listens there, and
    is closed at once."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no server
        probe.bind((host, port))


class Supervisor(Multiprocess):
    """uvicorn's, which also forgets the live gauges of each worker that ended: the pool
    gauges are summed over the workers' files, and a worker killed with 6 connections checked
    out showed 6 in use for as long as the server ran."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: set[int] = set()

    def keep_subprocess_alive(self) -> None:  # every half second, after the signals
        super().keep_subprocess_alive()
        self.forget_ended()

    def forget_ended(self) -> None:
        running = {p.pid for p in self.processes if p.pid is not None}
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            for pid in self.seen - running:
                multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        self.seen = running


def run_workers(config: uvicorn.Config) -> None:
    """``uvicorn.run`` for ``config.workers > 1``, with a listening socket per worker."""
    sock = reuse_port_socket(_family(config.host), (config.host, config.port))
    host, port = sock.getsockname()[:2]
    log.info("Uvicorn running on http://%s:%d with %d workers, one socket each (SO_REUSEPORT)",
             host, port, config.workers)  # fmt: skip
    supervisor = Supervisor(config, sockets=[sock])
    supervisor.run()
    # uvicorn's supervisor stops when a worker fails to start, and returns as after a clean
    # stop: the exit status must say it, as a single worker's does (a service manager would
    # otherwise take the failure for a deliberate stop).
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)
