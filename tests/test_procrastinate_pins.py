"""worker/resilience.py and worker/queue.py replace private methods of procrastinate 3.10.0's Worker
and App (README, "The worker and procrastinate's gaps"). Those copies are only right for the code they
were copied from, so the upstream source of every method we override, and of the private ones our
copies call, is pinned here: an upgrade that changes any of them fails this test until the copies
are re-checked (README, "Upgrading procrastinate")."""

from __future__ import annotations

import hashlib
import inspect

import procrastinate
from procrastinate import sql
from procrastinate.manager import JobManager
from procrastinate.worker import Worker

from worker.queue import WaypostApp
from worker.resilience import WaypostWorker

PINNED = {
    "Worker.__init__": "3d3b1c8f6b4248c71dc3ea32518db88b8bedf8a89155aab87363254f48f198f3",
    "Worker._fetch_and_process_jobs": "2963aa354dfda4d6bc639d907cbabb23c69d1381382b2560fb7735b0429117cb",
    "Worker._start_side_tasks": "2623df64cb23ce264ccafa10124fd232f3f6997572744e7f180d55dc28bb6abe",
    "Worker._update_heartbeat": "a45b4b3b030e082771389dcaea574bd5c49fff793feeb4cf7171bb332f3ea309",
    "Worker._periodic_deferrer": "4d767ea4506842ec5da7e76c86ee9d9d206aa446925d6fd685d71b25124801d0",
    "Worker._persist_job_status": "821921c86130d1517f51144cd8cb839b7d9426dd98832bebe885b9efc0b5d005",
    # its line for each job still running, said again with the job (WaypostWorker._shutdown)
    "Worker._shutdown": "7e40cbd5efe3acf5e3df6643261ce7e753562747de0db0a7ee88c94373c6e0c7",
    # not overridden, but called by our copies with the arguments 3.10.0 expects
    "Worker._process_job": "55a67c0ff525add9696f7395a43e6e4bf3125b9b944ff877d11f84b59b7875f9",
    "Worker._handle_notification": "3f1ca288aafc6d8dcef39d66c908f7d8bb68ed47f62ba05ce205721c8a83b666",
    # starts the side tasks and the fetch loop that we replace
    "Worker.run": "9a7c6a1ab8301be0c9c8acec8e521bf17cb20ad4f2e3be3ebe82fab2d9946556",
    "App._worker": "7be8c4b62e17f500458bae2974940e3b280dbdfb4e304d4bf2a89a47a1275085",
    "App.run_worker_async": "9ebb37af7a7ce3f9432cba274de22247778c8b3e0b551e52e2f28f12df04ddb0",
    # copied by WaypostWorker._fetch_jobs, whose query takes several jobs and adds the backlog
    "JobManager.fetch_job": "eb92906b55c10d9c7cfe87c778a91a54074b7b35ea8ffc7303a543256f244514",
    # done in place of the worker by a send's record (sql/queries.sql record_send, worker/job_end.py)
    "JobManager.finish_job_by_id_async": "37c39de96933522a0308c1360e9a4e39464833eca6cfc4468a1cdcff6b5861e2",
}
UPSTREAM = {"Worker": Worker, "App": procrastinate.App, "JobManager": JobManager}


def source_digest(qualified: str) -> str:
    owner, method = qualified.split(".")
    return hashlib.sha256(inspect.getsource(getattr(UPSTREAM[owner], method)).encode()).hexdigest()


def test_procrastinate_is_the_pinned_version() -> None:
    assert procrastinate.__version__ == "3.10.0", "re-check worker/resilience.py (README, 'Upgrading procrastinate')"


def test_every_overridden_upstream_method_is_pinned() -> None:
    overridden = {
        f"{upstream.__name__}.{name}"
        for ours, upstream in ((WaypostWorker, Worker), (WaypostApp, procrastinate.App))
        for name, value in vars(ours).items()
        if callable(value) and hasattr(upstream, name)
    }
    assert overridden <= PINNED.keys(), f"pin the upstream source of {sorted(overridden - PINNED.keys())}"


def test_the_finish_a_sends_record_makes_is_procrastinates_own() -> None:
    """record_send calls procrastinate_finish_job_v1 as procrastinate's finish_job query does."""
    assert sql.queries["finish_job"] == "SELECT procrastinate_finish_job_v1(%(job_id)s, %(status)s, %(delete_job)s);"


def test_upstream_source_of_the_replaced_methods_is_unchanged() -> None:
    changed = [name for name, digest in PINNED.items() if source_digest(name) != digest]
    assert not changed, (
        f"procrastinate changed {changed}: re-check the copies in worker/resilience.py and worker/queue.py "
        "against the new source, then update PINNED (README, 'Upgrading procrastinate')"
    )
