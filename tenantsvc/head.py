"""HEAD is GET without the body (pure ASGI), on every route that serves GET.

RFC 9110 asks every general-purpose server to support HEAD, and uptime checkers and caches
send it. FastAPI's routes answer only the methods they declare, so HEAD was a 405 whose Allow
header listed HEAD. Served as GET, a HEAD request goes through the same tenant resolution,
key check and read transaction, and its headers (Content-Length included) are GET's.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)
