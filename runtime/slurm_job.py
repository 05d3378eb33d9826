"""The callable a Slurm job runs (`--executor slurm`); imported only then, as it imports submitit.

`submitit.helpers.Checkpointable`: when Slurm is about to stop a job (its time limit, a
preemption), submitit requeues it with the same arguments; the requeued job claims the
runs again (the lock of the stopped job is stale) and resumes them from their checkpoints.
"""

from __future__ import annotations

import submitit

from runtime.cluster import work


class PackJob(submitit.helpers.Checkpointable):
    """One job of the array: `work(plan_json, job)` in the job's process."""

    def __call__(self, plan_json: str, job: dict) -> dict:
        return work(plan_json, job)
