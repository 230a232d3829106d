"""The worker's background loops go on through failures, and say so once per run of them."""

import asyncio

import pytest

from tenantsvc.periodic import Every


async def test_a_loop_outlives_failing_steps_and_logs_each_run_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes = iter([ValueError, ValueError, None, ValueError, None, None, None, None])
    done: list[str] = []
    six = asyncio.Event()

    async def step() -> None:
        failure = next(outcomes, None)
        done.append("failed" if failure else "ok")
        if len(done) == 6:
            six.set()
        if failure is not None:
            raise failure("the database is away")

    loop = Every(0.001, step, "test loop")
    loop.start()
    await asyncio.wait_for(six.wait(), timeout=10)
    await loop.stop()
    assert done[:6] == ["failed", "failed", "ok", "failed", "ok", "ok"]
    warned = [r for r in caplog.records if "test loop failed" in r.getMessage()]
    assert len(warned) == 2  # one per run of failures, not one per failure
