"""A send job's procrastinate job, ended by its send's record (issue 17).

procrastinate records a job's end in a transaction of its own once the task returns. A send job's
last write is its record (worker.sending), so WaypostWorker hands each job a JobEnd in its context:
the record ends the job as succeeded in the same statement, while it is still 'doing' (sql/queries.sql
`record_send`), and the worker then skips its own finish. One round trip and one commit less per
reply; and a send is never recorded while its job still looks unfinished.

A job the record did not end (no JobEnd: a plain procrastinate Worker; or no longer 'doing': the sweep
took it back) ends as procrastinate ends it.
"""

from __future__ import annotations

import dataclasses

import procrastinate

KEY = "waypost.job_end"


@dataclasses.dataclass
class JobEnd:
    job_id: int
    delete: bool  # the worker's delete_jobs removes a succeeded job
    ended: bool = False  # the send's record ended the job: the worker does not finish it again

    def params(self) -> dict[str, object]:
        """`record_send`'s parameters for this job."""
        return {"procrastinate_job_id": self.job_id, "delete_job": self.delete}


NO_JOB = {"procrastinate_job_id": None, "delete_job": False}


def of(context: procrastinate.JobContext) -> JobEnd | None:
    end = context.additional_context.get(KEY)
    return end if isinstance(end, JobEnd) else None
