"""What a request body may be, checked before it is read (pure ASGI).

- An oversize body is a 413 problem, refused before it is parsed or buffered whole, whether or
  not it declares its Content-Length.
- A body under a content coding (``Content-Encoding: gzip``) is a 415 that says the service
  reads bodies as sent (``Accept-Encoding: identity``, RFC 9110 15.5.16). Read as it came, a
  gzipped order was a 422 about "invalid start byte": true, and no help to the client.
"""

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantsvc.problems import problem_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer to a body refused on its headers alone, or None."""
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                return self._too_large()
            if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                return _coded(value)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0
        too_large = False

        async def counting_receive() -> Message:
            # Past the limit the app is told the client left: its body read fails, so no
            # handler runs on a truncated body; ``guarded_send`` turns its answer into a 413.
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                too_large = True
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._too_large()(scope, receive, send)

        await self.app(scope, counting_receive, guarded_send)

    def _too_large(self) -> Response:
        detail = f"the request body exceeds {self.max_bytes} bytes"
        return problem_response(413, "Payload too large", detail)


def _coded(coding: bytes) -> Response:
    shown = coding.decode("latin-1")[:40]
    detail = f"Content-Encoding {shown!r} is not read here: send the body uncompressed"
    headers = {"Accept-Encoding": "identity"}
    return problem_response(415, "Unsupported Media Type", detail, headers=headers)
