"""A worker's background loops: the registry poll, the activity flush, the replica monitor.

Each runs its step every few seconds until the app stops. A step that fails (the database
briefly away) is logged once per run of failures, not at every tick, and the loop goes on: a
loop that died would leave what it keeps (the tenant snapshot, the replicas' health, the
collected activity) stale with nothing to say so.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Every:
    def __init__(self, seconds: float, step: Callable[[], Awaitable[object]], name: str) -> None:
        self._seconds = seconds
        self._step = step
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._seconds)
            try:
                await self._step()
                failing = False
            except Exception:
                if not failing:
                    log.warning("%s failed; retrying every %s s", self._name, self._seconds,
                                exc_info=True)  # fmt: skip
                failing = True
