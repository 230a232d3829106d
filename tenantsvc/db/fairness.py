"""A cap on each tenant's transactions in progress per worker, so one tenant cannot take the pool.

Without it, a tenant that sends many slow requests at once (a burst of bulk imports, or
requests stuck behind a lock in its own schema) holds every pooled connection, and every other
tenant's requests wait for the pool until they time out: one noisy tenant makes the service
unavailable to all. With it, a tenant's requests beyond ``limit`` wait in that tenant's own
queue, holding no connection, and the connections above the cap stay for the other tenants.

The queue is first come, first served, and a finished transaction hands its place straight to
the next waiter of the same tenant. A request that waits longer than ``wait_seconds`` gives up
(``TenantBusyError``, a 429 for the client). Only tenants with transactions in progress or
waiting take memory, so the bookkeeping stays bounded however large the fleet.
"""

import asyncio
from collections import deque


class TenantBusyError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} requests of this tenant already in progress")
        self.limit = limit


class TenantSlots:
    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.limit = limit  # 0: no cap
        self.wait_seconds = wait_seconds
        self._held: dict[str, int] = {}
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}

    def held(self, key: str) -> int:
        return self._held.get(key, 0)

    def try_acquire(self, key: str) -> bool:
        """A place at once if there is one (no coroutine on the common path)."""
        held = self._held.get(key, 0)
        if held < self.limit or not self.limit:
            self._held[key] = held + 1
            return True
        return False

    async def acquire(self, key: str) -> None:
        if self.try_acquire(key):
            return
        waiter = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(key, deque())
        queue.append(waiter)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await waiter
        except TimeoutError:
            self._give_up(key, waiter)
            raise TenantBusyError(self.limit) from None
        except BaseException:
            self._give_up(key, waiter)
            raise

    def _give_up(self, key: str, waiter: "asyncio.Future[None]") -> None:
        if waiter.done() and not waiter.cancelled():
            self.release(key)  # handed a place just as it gave up: pass it on
            return
        queue = self._queues.get(key)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[key]

    def release(self, key: str) -> None:
        queue = self._queues.get(key)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                if not queue:
                    del self._queues[key]
                waiter.set_result(None)  # the place passes on; the count stays
                return
        self._queues.pop(key, None)
        held = self._held[key] - 1
        if held:
            self._held[key] = held
        else:
            del self._held[key]
