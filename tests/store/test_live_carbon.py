"""The live loop with the carbon layer: forecasts come from the regions' series, a
flexible job waits with a reason, an inflexible one is placed at once, and a policy's
suspension requeues a job without using up its attempts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from commonpool.scheduler.carbon.forecast_cache import ForecastCache
from commonpool.scheduler.carbon.reading import IntensityPoint, IntensitySeries
from commonpool.scheduler.loop import SchedulerLoop
from commonpool.scheduler.policy import Preemption, make_policy
from commonpool.scheduler.services.jobs import get_job, submit_job
from commonpool.scheduler.services.preemption import apply_preemptions
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec, online_node


class DirtyNowCleanTonight:
    """A provider whose region is dirty for the next 6 h, then clean."""

    def series(self, region: str, start: datetime, end: datetime) -> IntensitySeries:
        hours = int((end - start).total_seconds() // 3600) + 1
        points = tuple(
            IntensityPoint(start + timedelta(hours=h), 500.0 if h < 6 else 50.0)
            for h in range(hours)
        )
        return IntensitySeries(points, source="test")

    def intensity(self, region: str, at: datetime):  # pragma: no cover - unused here
        raise NotImplementedError


def flexible_and_inflexible(db: Database) -> tuple[str, str]:
    """On one GB node: a 1 h carbon-aware job due in 30 h, and a job without carbon terms."""
    deadline = datetime.now(UTC) + timedelta(hours=30)
    with db.unit_of_work() as session:
        online_node(session, cpus=4, region="GB")
        flexible = submit_job(
            session, job_spec(carbon="aware", deadline=deadline, max_runtime_s=3600), actor="t"
        ).id
        return flexible, submit_job(session, job_spec(), actor="t").id


def test_flexible_job_waits_for_cleaner_power_inflexible_runs(db: Database) -> None:
    flexible, urgent = flexible_and_inflexible(db)
    cache = ForecastCache(DirtyNowCleanTonight())
    loop = SchedulerLoop(db, make_policy("fifo+carbon"), forecasts=cache.forecasts)
    report = loop.step()
    assert urgent in report.placed and flexible not in report.placed
    with db.unit_of_work(write=False) as session:
        reason = get_job(session, flexible).pending_reason or ""
    assert "cleaner power" in reason, reason
    assert cache.forecasts(["GB"], time.time())["GB"][0][1] == 500.0


def test_policy_suspension_requeues_without_using_an_attempt(db: Database) -> None:
    with db.unit_of_work() as session:
        online_node(session, cpus=2)
        job_id = submit_job(session, job_spec(max_attempts=1), actor="t").id
    SchedulerLoop(db, make_policy("fifo")).step()
    with db.unit_of_work() as session:
        done = apply_preemptions(session, [Preemption(job_id, "carbon: suspended at checkpoint")])
    assert done == [job_id]
    with db.unit_of_work(write=False) as session:
        job = get_job(session, job_id)
        assert (job.state, job.attempt, job.carbon_suspensions) == ("QUEUED", 2, 1)


class DirtierNow(DirtyNowCleanTonight):
    """The same shape, dirtier: a later cycle's forecast must not move the baseline."""

    def series(self, region: str, start: datetime, end: datetime) -> IntensitySeries:
        base = super().series(region, start, end)
        return IntensitySeries(
            tuple(IntensityPoint(p.at, p.g_per_kwh * 1.5) for p in base.points), source="test"
        )


def test_a_deferred_job_keeps_the_intensity_of_its_first_deferral_as_baseline(
    db: Database,
) -> None:
    flexible, inflexible = flexible_and_inflexible(db)
    loop = SchedulerLoop(
        db, make_policy("fifo+carbon"), forecasts=ForecastCache(DirtyNowCleanTonight()).forecasts
    )
    loop.step()
    with db.unit_of_work(write=False) as session:
        assert get_job(session, flexible).carbon_baseline_g_per_kwh == 500.0  # 1 h at 500
        assert get_job(session, inflexible).carbon_baseline_g_per_kwh is None
    dirtier = ForecastCache(DirtierNow()).forecasts
    loop.forecasts = dirtier
    loop.step()  # the same scheduler again ...
    SchedulerLoop(db, make_policy("fifo+carbon"), forecasts=dirtier).step()  # ... and a restart
    with db.unit_of_work(write=False) as session:
        job = get_job(session, flexible)
        assert "cleaner power" in (job.pending_reason or "")
        assert job.carbon_baseline_g_per_kwh == 500.0
