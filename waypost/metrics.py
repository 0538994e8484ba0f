"""Prometheus metrics (prometheus-client), shared by the web app and the worker.

Counters and histograms are updated where things happen; what lives in the database (queue depth,
oldest waiting job, worker heartbeats) is read at scrape time by DatabaseCollector, so a scrape
costs four small queries. With PROMETHEUS_MULTIPROC_DIR set (uvicorn --workers N), every process
writes its samples there and a scrape adds them up (prometheus-client's multiprocess mode).
Every metric is described in docs/operations.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from waypost.db import connect_sync, fetch_all_sync

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
REPLY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

WEBHOOK_REQUESTS = Counter(
    "waypost_webhook_requests", "Webhook POSTs by outcome", ["outcome"]
)  # ok, duplicate, bad_signature, bad_payload, too_large, db_mismatch, db_unavailable, error
WEBHOOK_SECONDS = Histogram("waypost_webhook_seconds", "Webhook answer time", buckets=LATENCY_BUCKETS)
# How many webhooks each of the common webhook's statements stored (webhook/group_commit.py): above 1,
# POSTs waited for a statement and shared its commit
WEBHOOK_GROUP_SIZE = Histogram(
    "waypost_webhook_group_size", "Webhooks stored per statement", buckets=(1, 2, 4, 8, 16, 32, 64)
)
INBOUND_MESSAGES = Counter("waypost_inbound_messages", "New inbound messages stored")
STATUSES = Counter("waypost_statuses", "Status webhook items by outcome", ["outcome"])
SENDS = Counter("waypost_sends", "Graph API sends by result and Graph error code", ["result", "code"])
REPLY_JOBS = Counter("waypost_reply_jobs", "Reply jobs by final state", ["state"])
REPLY_ATTEMPTS = Histogram("waypost_reply_job_attempts", "Runs a reply job took", buckets=(1, 2, 3, 4, 6, 10, 20))
REPLY_SECONDS = Histogram(
    "waypost_reply_seconds", "Inbound message stored -> its reply recorded as sent", buckets=REPLY_BUCKETS
)
ORCHESTRATOR_SECONDS = Histogram(
    "waypost_orchestrator_seconds", "Orchestrator answer time", ["provider"], buckets=LATENCY_BUCKETS
)
ORCHESTRATOR_FAILURES = Counter("waypost_orchestrator_failures", "Orchestrator failures", ["provider"])
# Cost and delivery (migration 0019_pricing): labels are bounded, unknown values count as "other".
PRICED_MESSAGES = Counter(
    "waypost_priced_messages",
    "Outbound messages priced by a status webhook",
    ["phone_number_id", "category", "type", "billable"],
)
# Late replies with WAYPOST_REENGAGE_TEMPLATE on (worker/reengage.py): `sent`, or the outcome that kept it back
REENGAGEMENTS = Counter(
    "waypost_reengagements", "Re-engagement templates sent instead of late replies, or not", ["outcome"]
)
UNDELIVERED = Counter("waypost_undelivered_flagged", "Messages the sweep flagged accepted but not delivered")
# Read receipts and typing indicators (worker/receipts.py): kind typing|read, outcome ok|failed.
READ_RECEIPTS = Counter(
    "waypost_read_receipts", "Read-receipt calls to the Cloud API by kind and outcome", ["kind", "outcome"]
)
PRICING_CATEGORIES = frozenset(
    {"service", "utility", "marketing", "marketing_lite", "authentication", "authentication_international"}
)
PRICING_TYPES = frozenset({"regular", "free_customer_service", "free_entry_point"})


def count_pricing(phone_number_id: str, pricing: dict[str, object]) -> None:
    """One priced message; pricing is the status item's `pricing` object as Meta sent it."""
    category = pricing.get("category")
    kind = pricing.get("type")
    billable = pricing.get("billable")
    PRICED_MESSAGES.labels(
        phone_number_id[:64],
        category if category in PRICING_CATEGORIES else "other",
        kind if kind in PRICING_TYPES else "other",
        str(billable).lower() if isinstance(billable, bool) else str(kind == "regular").lower(),
    ).inc()


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("waypost_database_up", "1 when the scrape could read the database")
        try:
            with connect_sync(self.database_url, autocommit=True, connect_timeout=5) as conn:
                rows = {name: fetch_all_sync(conn, name) for name in _QUERIES}
        except psycopg.Error:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from _families(rows)


_QUERIES = (
    "metrics_queue",
    "metrics_outbound_jobs",
    "metrics_workers",
    "metrics_unknown_sends",
    "metrics_undelivered",
)


def _families(rows: dict[str, list[dict[str, Any]]]) -> Iterator[GaugeMetricFamily]:
    depth = GaugeMetricFamily("waypost_queue_depth", "Jobs due and waiting in procrastinate", labels=["queue"])
    oldest = GaugeMetricFamily(
        "waypost_queue_oldest_seconds", "Age of the oldest job due and waiting", labels=["queue"]
    )
    for row in rows["metrics_queue"]:
        depth.add_metric([row["queue_name"]], row["waiting"])
        oldest.add_metric([row["queue_name"]], float(row["oldest_seconds"]))
    open_jobs = GaugeMetricFamily("waypost_open_reply_jobs", "Reply jobs not finished", labels=["status"])
    open_oldest = GaugeMetricFamily(
        "waypost_open_reply_jobs_oldest_seconds", "Age of the oldest unfinished reply job", labels=["status"]
    )
    for status in ("gathering", "pending", "running"):
        found = [r for r in rows["metrics_outbound_jobs"] if r["status"] == status]
        open_jobs.add_metric([status], found[0]["jobs"] if found else 0)
        open_oldest.add_metric([status], float(found[0]["oldest_seconds"]) if found else 0.0)
    heartbeat = GaugeMetricFamily(
        "waypost_worker_heartbeat_age_seconds", "Age of each worker's last heartbeat", labels=["worker_id"]
    )
    for row in rows["metrics_workers"]:
        heartbeat.add_metric([str(row["id"])], float(row["heartbeat_age_seconds"]))
    workers = GaugeMetricFamily("waypost_workers", "Workers registered in procrastinate_workers")
    workers.add_metric([], len(rows["metrics_workers"]))
    unknown = GaugeMetricFamily("waypost_unknown_sends", "Sends whose outcome is being reconciled")
    unknown.add_metric([], rows["metrics_unknown_sends"][0]["sends"])
    undelivered = GaugeMetricFamily(
        "waypost_undelivered_messages", "Messages flagged accepted but not delivered, still without a delivery"
    )
    undelivered.add_metric([], rows["metrics_undelivered"][0]["messages"])
    yield from (depth, oldest, open_jobs, open_oldest, heartbeat, workers, unknown, undelivered)


def process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render(database_url: str) -> bytes:
    """The exposition text: process metrics, then the database gauges. Blocking: run in a thread."""
    database = CollectorRegistry()
    database.register(DatabaseCollector(database_url))
    return generate_latest(process_registry()) + generate_latest(database)


class Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
