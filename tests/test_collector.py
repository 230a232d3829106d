"""The app's startup tunes the garbage collector as its settings say (tenantsvc/collector.py)."""

import gc
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantsvc.settings import Settings
from tenantsvc.testing.app import start_app, stop_app


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
async def test_startup_raises_the_young_threshold_and_freezes(
    settings: Settings, engine: AsyncEngine
) -> None:
    gc.unfreeze()
    older = gc.get_threshold()[1:]
    tuned = settings.model_copy(update={"gc_young_threshold": 12_345, "gc_freeze": True})
    manager, running = await start_app(tuned)
    try:
        assert gc.get_threshold() == (12_345, *older)
        assert gc.get_freeze_count() > 10_000  # the modules, routes and schemas at least
        assert (await running.client.get("/healthz")).status_code == 200
    finally:
        await stop_app(manager, running)


@pytest.mark.usefixtures("restored_collector")
async def test_zero_and_false_leave_the_collector_alone(
    settings: Settings, engine: AsyncEngine
) -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    manager, running = await start_app(settings)  # the test settings: 0 and False
    await stop_app(manager, running)
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
