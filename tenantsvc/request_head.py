"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

httptools sets none, and uvicorn adds none for it (its ``h11_max_incomplete_event_size`` is
for h11 alone): a client could send one header of 50 MB, or 20,000 headers, and each worker
buffered and parsed all of it before the app saw a byte. Beyond ``MAX_HEAD_BYTES`` the
connection gets a 431 problem and is closed. nginx's default allows 4 x 8 KB of headers; this
leaves room for that and for long cookies or tokens a gateway adds.

The count is of the bytes received while a head is still incomplete, taken after the parser
has seen them: a chunk that completes a head (with a body behind it), or ends a body (with the
start of the next request's head behind it), is not counted, so a body is never mistaken for a
head. What the parser holds is then at most the bound plus one read.
"""

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024

_BODY = json.dumps(
    {
        "type": "about:blank",
        "title": "Request Header Fields Too Large",
        "status": 431,
        "detail": f"the request line and headers exceed {MAX_HEAD_BYTES} bytes",
    }
).encode()
_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


class BoundedHeadProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes: int | None = 0  # None while a body is read or a response is due
        self._ended = False  # a request ended within the bytes just fed

    def data_received(self, data: bytes) -> None:
        self._ended = False
        super().data_received(data)
        if self._head_bytes is None or self._ended or self.transport.is_closing():
            return  # uncounted: a chunk that ends a body, whatever of the next head it holds
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self.logger.warning("a request's head passed %d bytes: 431", MAX_HEAD_BYTES)
            self.transport.write(_RESPONSE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes, self._ended = 0, True  # the next request's head starts
