"""A cycle's first step: apply the outbox requests of `outbox retry` and `outbox drop`.

Read from the store, applied to the in-memory state (`domain.outbox_requests`), logged, and
forgotten by the store only once the state they changed is saved, so a cycle that stops before
its save (a crash, a lost lease) leaves them to the next one.
"""

from __future__ import annotations

import structlog

from notifier.deliver.worker import DeliveryWorkers
from notifier.domain.models import NotifierState
from notifier.domain.outbox_requests import apply_requests
from notifier.store.store import CycleStore

log = structlog.get_logger("notifier.run.cycle")


async def apply_outbox_requests(
    store: CycleStore, state: NotifierState, deliveries: DeliveryWorkers, destinations: list[str]
) -> list[str]:
    """Apply the waiting requests to `state`'s outbox and lift the deferrals a retry names;
    the IDs of the requests applied (or discarded), to settle after the save."""
    try:
        requests = await store.outbox_requests()
    except Exception as exc:
        log.warning("outbox_requests_unreadable", error=str(exc))
        return []
    if not requests:
        return []
    done = apply_requests(state.outbox, requests, destinations)
    state.outbox = done.outbox
    for applied in done.applied:
        tell = log.warning if applied.event == "outbox_request_discarded" else log.info
        tell(applied.event, **applied.fields())
    lifted = deliveries.resume(done.resume)
    if lifted:
        log.info("deferral_lifted", destinations=lifted, reason="outbox retry")
    return [request.id for request in requests]


async def settle_outbox_requests(store: CycleStore, ids: list[str]) -> None:
    """Forget the requests applied, their result saved; a failure leaves them to be applied
    again (they are idempotent)."""
    if not ids:
        return
    try:
        await store.settle_outbox_requests(ids)
    except Exception as exc:
        log.warning("outbox_requests_unsettled", error=str(exc), requests=len(ids))
