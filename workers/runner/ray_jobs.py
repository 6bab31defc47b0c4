"""`Runner` on the Ray Jobs API: one Ray job (driver process) per pool job attempt.

Why Ray Jobs rather than a driver inside the scheduler: each run is its own
process with its own runtime_env (the job's working directory and
environment), `stop_job` kills the driver and every Train worker it
started, the job's output (driver + workers) is captured by Ray and
readable after a crash, and a scheduler restart finds runs by their
deterministic submission id (`<job id>-a<attempt>`) instead of losing them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from commonpool.scheduler.ports import LaunchRequest, RunReport, RunStatus, run_ref
from commonpool.workers.ray_node import NODE_LABEL
from commonpool.workers.runner import launch_spec

_STATUS = {
    "PENDING": RunStatus.PENDING,
    "RUNNING": RunStatus.RUNNING,
    "SUCCEEDED": RunStatus.SUCCEEDED,
    "FAILED": RunStatus.FAILED,
    "STOPPED": RunStatus.STOPPED,
}


class RayJobsRunner:
    def __init__(
        self, dashboard_url: str, storage_path: Path, auth_token: str | None = None
    ) -> None:
        from ray.job_submission import JobSubmissionClient

        self.headers = {"Authorization": f"Bearer {auth_token}"} if auth_token else {}
        self.dashboard_url = dashboard_url.rstrip("/")
        self.client = JobSubmissionClient(dashboard_url, headers=self.headers or None)
        self.storage_path = storage_path
        self._log_offsets: dict[str, int] = {}

    @staticmethod
    def submission_id(request: LaunchRequest) -> str:
        return run_ref(request.job_id, request.attempt)

    def launch(self, request: LaunchRequest) -> str:
        ref = self.submission_id(request)
        if self._exists(ref):  # a previous scheduler launched it before crashing: adopt it
            return ref
        self.storage_path.mkdir(parents=True, exist_ok=True)
        runtime_env: dict[str, object] = {
            "env_vars": {
                **request.env,
                # Train health checks at 0.5 s: a run ends ~1.5 s after its last epoch, not ~6 s.
                "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
                launch_spec.ENV_LAUNCH: launch_spec.dump(request),
                launch_spec.ENV_STORAGE: str(self.storage_path),
            }
        }
        if request.working_dir:
            runtime_env["working_dir"] = request.working_dir
        self.client.submit_job(
            entrypoint=f"{sys.executable} -m commonpool.workers.runner.driver",
            submission_id=ref,
            runtime_env=runtime_env,
            entrypoint_num_cpus=0,
            metadata={"commonpool_job": request.job_id, "attempt": str(request.attempt)},
        )
        return ref

    def _exists(self, ref: str) -> bool:
        try:
            self.client.get_job_info(ref)
        except RuntimeError:  # "Job <ref> does not exist"
            return False
        return True

    def poll(self, ref: str) -> RunReport:
        try:
            info = self.client.get_job_info(ref)
        except RuntimeError as exc:
            return RunReport(RunStatus.MISSING, f"Ray has no record of {ref}: {exc}")
        status = _STATUS.get(str(info.status), RunStatus.RUNNING)
        message = info.message or ""
        if status is RunStatus.FAILED:
            message = self._failure_text(ref, message)
        return RunReport(status, message)

    def _failure_text(self, ref: str, message: str) -> str:
        """Ray's message plus the last lines of output: the traceback a user needs."""
        try:
            logs = self.client.get_job_logs(ref)
        except RuntimeError:
            return message
        tail = "\n".join(logs.splitlines()[-40:])
        return f"{message.splitlines()[0] if message else 'failed'}\n{tail}"

    def new_log_lines(self, ref: str) -> list[str]:
        try:
            text = self.client.get_job_logs(ref)
        except RuntimeError:
            return []
        lines = text.splitlines()
        start = self._log_offsets.get(ref, 0)
        self._log_offsets[ref] = len(lines)
        return lines[start:]

    def live_nodes(self) -> set[str] | None:
        """Our nodes (by label) that Ray's state API reports ALIVE."""
        try:
            response = httpx.get(f"{self.dashboard_url}/api/v0/nodes",
                                 params={"limit": 10_000, "detail": "true"},
                                 headers=self.headers, timeout=10)
            response.raise_for_status()
            nodes = response.json()["data"]["result"]["result"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return {n["labels"][NODE_LABEL] for n in nodes
                if n.get("state") == "ALIVE" and NODE_LABEL in (n.get("labels") or {})}

    def stop(self, ref: str) -> None:
        try:
            self.client.stop_job(ref)
        except RuntimeError:
            pass  # already gone
        self._log_offsets.pop(ref, None)


def default_storage(state_dir: Path) -> Path:
    """Checkpoints on a path every node can reach: on one machine, a pool-local folder."""
    return Path(os.environ.get("COMMONPOOL_CHECKPOINT_STORAGE", state_dir / "checkpoints"))
