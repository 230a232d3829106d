"""uvicorn's httptools protocol with bounds on a request's head (request line and headers):
its size, and how long it may take to arrive; and problem bodies where uvicorn answers
itself: a request the parser refuses, or one a shutdown cancelled (``ProblemCycle``).

httptools sets neither, and uvicorn adds neither for it (its ``h11_max_incomplete_event_size``
is for h11 alone; ``timeout_keep_alive`` runs only between requests, and any byte stops it):

- **Size.** A client could send one header of 50 MB, or 20,000 headers, and each worker
  buffered and parsed all of it before the app saw a byte. Beyond ``MAX_HEAD_BYTES`` the
  connection gets a 431 problem and is closed. nginx's default allows 4 x 8 KB of headers;
  this leaves room for that and for long cookies or tokens a gateway adds.
- **Time.** A connection that sends nothing, or trickles a head a byte at a time (slowloris),
  was held for as long as the client liked: enough of them use up a worker's file
  descriptors. A head that has not arrived ``TENANTSVC_HEAD_TIMEOUT_SECONDS`` (20) after it
  began gets a 408 problem and is closed; a connection that sent nothing in that time is
  closed without one, as nginx does, since a request it sends at that moment would read the
  408 as its answer. One timer per worker sweeps the connections, so a request pays nothing
  for it unless its head spans more than one read.
- **The body's time.** A body trickled a byte at a time (a slow POST) was waited for as long
  as the client liked, a request in flight each: the app reads it before it takes a database
  connection, so only sockets, but as many as a client with a key wants. A body not all
  arrived ``TENANTSVC_BODY_TIMEOUT_SECONDS`` (60) after its head gets a 408 problem and the
  connection is closed (only closed, if the app has answered already without reading it). The
  same sweep watches it: a request pays a clock read for it.

A request the parser refuses (Content-Length with Transfer-Encoding, two lengths, a bad
header token: the framing a request-smuggling attempt uses) gets a 400 problem saying what the
parser found, where uvicorn answered plain text.

The size counted is the bytes received while a head is still incomplete, taken after the
parser has seen them: a chunk that completes a head (with a body behind it), or ends a body
(with the start of the next request's head behind it), is not counted, so a body is never
mistaken for a head. What the parser holds is then at most the bound plus one read. A body's
pace is not bounded here: the app reads it before it takes a database connection, so a slow
one holds only its socket.
"""

import asyncio
import sys
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from tenantsvc.observability.middleware import SERVER_ANSWERED
from tenantsvc.problems import MEDIA_TYPE, problem_body
from tenantsvc.settings import get_settings

MAX_HEAD_BYTES = 64 * 1024


def _closing_problem(status: int, reason: str, detail: str) -> bytes:
    """A whole response, written straight to the socket: the app never saw this request."""
    body = problem_body(status, reason, detail).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


_TOO_LARGE = _closing_problem(
    431, "Request Header Fields Too Large",
    f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
)  # fmt: skip
_TOO_SLOW = _closing_problem(408, "Request Timeout", "the request line and headers took too long")
_BODY_TOO_SLOW = _closing_problem(408, "Request Timeout", "the request body took too long")


class ProblemCycle(RequestResponseCycle):
    """uvicorn's request cycle, answering a problem body where uvicorn answers its own text.

    uvicorn writes "Internal Server Error" as plain text for a request whose app never started
    a response: its exception handlers (``problems.py``) answer every ``Exception``, so what
    reaches here is a cancellation. On a shutdown past ``SHUTDOWN_TIMEOUT_SECONDS`` that is
    the server's doing: a 503 that says to retry. A transaction still open is rolled back; one
    cancelled in the instant between its commit and its answer did commit, which is what an
    ``Idempotency-Key`` on a retried write is for."""

    shutting_down = False  # set by the connection when the server's shutdown begins

    async def send_500_response(self) -> None:
        cancelled = isinstance(sys.exc_info()[1], asyncio.CancelledError)
        if cancelled and self.shutting_down:
            status, title, detail = 503, "Service Unavailable", "the server is shutting down"
            headers = [(b"retry-after", b"1")]
        else:
            status, title, detail, headers = 500, "Internal Server Error", None, []
        body = problem_body(status, title, detail).encode()
        content = [(b"content-type", MEDIA_TYPE.encode()), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode()), *headers]  # fmt: skip
        await self.send({"type": "http.response.start", "status": status, "headers": content})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class BoundedHeadProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes: int | None = 0  # None while a body is read or a response is due
        self._head_since: float | None = None  # when the head still awaited began
        self._body_since: float | None = None  # when the head of a request still read ended
        self._ended = False  # a request ended within the bytes just fed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()
        _sweep_from(self)

    def data_received(self, data: bytes) -> None:
        self._ended = False
        super().data_received(data)
        if self._head_bytes is None or self._ended or self.transport.is_closing():
            return  # uncounted: a chunk that ends a body, whatever of the next head it holds
        if self._head_since is None:
            self._head_since = self.loop.time()
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(_TOO_LARGE, "a request's head passed %d bytes: 431", MAX_HEAD_BYTES)

    def on_headers_complete(self) -> None:
        self._head_bytes = self._head_since = None
        self._body_since = self.loop.time()
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:  # none for an upgrade (a WebSocket)
            self.cycle.__class__ = ProblemCycle  # made just now: its task has not run yet

    def shutdown(self) -> None:
        """The server's graceful shutdown begins: a request still running then, and cancelled
        when the shutdown's time is up, is answered 503."""
        if isinstance(self.cycle, ProblemCycle):
            self.cycle.shutting_down = True
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        """A request the parser refused (both Content-Length and Transfer-Encoding, a bad
        header token) gets a problem body that says what the parser found, where uvicorn
        sent "Invalid HTTP request received." as plain text. Called while uvicorn handles the
        parser's error, so that error is the one being handled."""
        error = sys.exc_info()[1]
        reason = str(error) if isinstance(error, httptools.HttpParserError) else ""
        detail = f"not a valid HTTP/1.1 request: {reason or msg}"
        self.transport.write(_closing_problem(400, "Bad Request", detail))
        self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes, self._ended, self._body_since = 0, True, None  # the next head starts

    def close_if_late(self, now: float, limit: float, body_limit: float) -> None:
        """Past the head's time, unless a response is still due on the connection (a
        pipelined head waits for it; ``timeout_keep_alive`` follows that response); past the
        body's time whatever the app is doing: it is waiting for that body, or has answered."""
        if self._body_since is not None and now - self._body_since > body_limit:
            self._cut_body_off(body_limit)
            return
        late = self._head_since is not None and now - self._head_since > limit
        responding = self.cycle is not None and not self.cycle.response_complete
        if not late or responding or self.transport.is_closing():
            return
        if self._head_bytes:  # a client part way through its request reads the answer
            self._refuse(_TOO_SLOW, "a request's head took over %g s: 408", limit)
        else:  # one that sent nothing may be about to: a 408 could pass for its answer
            self.transport.close()

    def _cut_body_off(self, limit: float) -> None:
        """A 408 in place of the app's answer, unless the app has answered already: then the
        connection is only closed."""
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_started:
            self.transport.close()
            return
        self.cycle.response_started = True  # the app's own answer goes nowhere
        self.cycle.scope[SERVER_ANSWERED] = 408  # type: ignore[literal-required]  # logged so
        self._refuse(_BODY_TOO_SLOW, "a request's body took over %g s: 408", limit)

    def _refuse(self, response: bytes, message: str, bound: float) -> None:
        self.logger.warning(message, bound)
        self.transport.write(response)
        self.transport.close()


def _sweep_from(protocol: BoundedHeadProtocol) -> None:
    """One sweep per worker (its connections are the server's), started by its first, about
    four times per head timeout (at most every 5 s): a late head is closed within 1.25 times
    the timeout."""
    state = protocol.server_state
    if not getattr(state, "tenantsvc_head_sweep", False):
        state.tenantsvc_head_sweep = True  # type: ignore[attr-defined]
        settings = get_settings()
        limits = settings.head_timeout_seconds, settings.body_timeout_seconds
        _sweep(state.connections, protocol.loop, limits, min(min(limits) / 4, 5.0))


def _sweep(
    connections: set[Any],
    loop: asyncio.AbstractEventLoop,
    limits: tuple[float, float],
    every: float,
) -> None:
    now = loop.time()
    for connection in list(connections):
        if isinstance(connection, BoundedHeadProtocol):
            connection.close_if_late(now, *limits)
    loop.call_later(every, _sweep, connections, loop, limits, every)
