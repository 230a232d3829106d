"""HEAD is GET without the body (pure ASGI), on every route that serves GET.

RFC 9110 asks every general-purpose server to support HEAD, and uptime checkers and caches
send it. FastAPI's routes answer only the methods they declare, so HEAD was a 405 whose Allow
header listed HEAD. Served as GET, a HEAD request goes through the same tenant resolution,
key check and read transaction, and its headers (Content-Length included) are GET's.

The scope is changed in place, not copied: the outer middleware reads what the inner layers
leave in it (the matched route, the state with where the read was served). It says HEAD
again from the response's start, for the server (uvicorn sends no body for a HEAD) and for
the access log and metrics.
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
            if message["type"] == "http.response.start":
                scope["method"] = "HEAD"
            elif message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        scope["method"] = "GET"
        try:
            await self.app(scope, receive, without_body)
        finally:
            scope["method"] = "HEAD"
