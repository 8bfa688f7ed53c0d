"""The polling worker: claims batches of due deliveries and sends them from a thread pool.

``manage.py better_webhooks worker`` runs it. SIGTERM and SIGINT stop it gracefully: the batch in
flight is finished and recorded, no new batch is claimed. A worker killed outright leaves its
deliveries under a lease; when the lease expires another worker claims them again. A batch never
outlives its lease: deliveries it has no lease left to attempt are released for the next claim.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from typing import Any

from django.db import close_old_connections, connections

from better_webhooks import delivery
from better_webhooks.conf import webhook_settings

logger = logging.getLogger(__name__)


class Worker:
    """Claim, send and record batches until stopped."""

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        concurrency: int | None = None,
        interval: float | None = None,
        lease: float | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.batch_size = int(batch_size or webhook_settings.WORKER_BATCH_SIZE)
        self.concurrency = int(concurrency or webhook_settings.WORKER_CONCURRENCY)
        self.interval = float(webhook_settings.WORKER_INTERVAL if interval is None else interval)
        self.lease = float(lease or webhook_settings.LEASE_SECONDS)
        self.worker_id = worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self.stopping = threading.Event()
        self.client, self.executor = delivery.sending_pool(self.concurrency)
        self.delivered = 0
        self.attempted = 0
        self.released = 0
        if self.lease < delivery.lease_needed():
            logger.warning(
                "Webhook worker %s: its lease (%g s) is shorter than one attempt needs (%g s: "
                "CONNECT_TIMEOUT + TIMEOUT + %g s to record it); it will release every delivery "
                "it claims without sending it.",
                self.worker_id,
                self.lease,
                delivery.lease_needed(),
                delivery.LEASE_MARGIN,
            )

    def stop(self, *_: Any) -> None:
        """Finish the batch in flight, then return from ``run``."""
        if not self.stopping.is_set():
            logger.info("Webhook worker %s stopping after the batch in flight.", self.worker_id)
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run_once(self) -> int:
        """Claim and send one batch; returns the number of deliveries attempted (those released
        for want of lease are not: they are due again, for the next claim)."""
        claimed = delivery.claim(self.batch_size, self.worker_id, self.lease)
        if not claimed:
            return 0
        outcomes = delivery.deliver_batch(claimed, self.worker_id, self.client, self.executor)
        released = sum(1 for outcome in outcomes if outcome.status == "released")
        self.released += released
        self.attempted += len(outcomes) - released
        self.delivered += sum(1 for outcome in outcomes if outcome.status == "delivered")
        return len(outcomes) - released

    def run(self, *, max_batches: int | None = None, until_idle: bool = False) -> None:
        """Loop until stopped (or after ``max_batches``, or at the first empty poll)."""
        batches = 0
        alias = webhook_settings.DATABASE
        while not self.stopping.is_set():
            if not connections[alias].in_atomic_block:
                # Drop a connection the server closed or that outlived CONN_MAX_AGE.
                close_old_connections()
            try:
                count = self.run_once()
            except Exception:
                if max_batches is not None or until_idle:
                    raise
                # A database hiccup must not end the worker; the lease protects the batch.
                logger.exception("Webhook worker %s: batch failed; retrying.", self.worker_id)
                connections[alias].close()
                self.stopping.wait(self.interval)
                continue
            batches += 1
            if max_batches is not None and batches >= max_batches:
                break
            if count == 0:
                if until_idle:
                    break
                self.stopping.wait(self.interval)
            elif count < self.batch_size:
                # A short batch (nothing else due, or the lease cut it short and released the
                # rest): claim again soon, but do not poll in a tight loop.
                self.stopping.wait(min(self.interval, 0.05))

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        self.client.close()
