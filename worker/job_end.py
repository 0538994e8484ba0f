"""A send job's procrastinate job, ended by its send's record (issue 17).

procrastinate records a job's end in a transaction of its own once the task returns. A send job's
last write is its record (worker.sending), so WaypostWorker hands each job a JobEnd in its context:
the record ends the job as succeeded in the same statement, while it is still 'doing' under this
worker (sql/queries.sql `record_send`), and the worker then skips its own finish: one round trip and
one commit less per reply.

A job the record did not end ends as procrastinate ends it: no JobEnd (a plain procrastinate Worker);
no longer 'doing' under this worker (the sweep took it back, and it may run again elsewhere); or a
record made again after its first answer was lost with the connection (procrastinate's finish then
finds the job ended and the worker says so in a warning).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import procrastinate

KEY = "waypost.job_end"


@dataclasses.dataclass
class JobEnd:
    job_id: int
    worker_id: int  # the worker running it: a job another worker now runs is not this record's to end
    delete: bool  # the worker's delete_jobs removes a succeeded job
    ended: bool = False  # the send's record ended the job: the worker does not finish it again

    def params(self) -> dict[str, object]:
        """`record_send`'s parameters for this job."""
        return {"procrastinate_job_id": self.job_id, "worker_id": self.worker_id, "delete_job": self.delete}


NO_JOB: Mapping[str, object] = {"procrastinate_job_id": None, "worker_id": None, "delete_job": False}


def of(context: procrastinate.JobContext) -> JobEnd | None:
    end = context.additional_context.get(KEY)
    return end if isinstance(end, JobEnd) else None
