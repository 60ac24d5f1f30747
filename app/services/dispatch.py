"""The observer's machinery: the handler contract, the beat relay and running a message's handlers.

Which handlers react to which event is decided elsewhere (``app.services.handlers``); dispatch
gets that registry as an argument, so a handler module can import ``EventContext`` without
importing every other handler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from app.adapters.queue import DISPATCH_EVENT, BrokerUnavailable, send_task
from app.domain.events import Event
from app.log import get_logger
from app.services.outbox import STALE_AFTER_SECONDS
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork

log = get_logger(__name__)

RELAY_BATCH = 200


@dataclass(frozen=True)
class EventContext:
    event_id: int  # the outbox message id: a stable key for "once per event"
    request_id: str | None


Handler = Callable[[Event, EventContext], None]
HandlerRegistry = Mapping[type[Event], Sequence[Handler]]
# What a handler asks to run once its transaction committed (e.g. publish the task it recorded).
AfterCommit = Callable[[], None]
TransactionalWork = Callable[[Event, EventContext, UnitOfWork], AfterCommit | None]


def relay_outbox(limit: int = RELAY_BATCH) -> int:
    """The beat relay: publish relayable messages, in id order, in one short transaction; returns
    how many. (Right after a commit, the unit of work publishes without a transaction.)"""
    published: list[int] = []
    with UnitOfWork(relay_after_commit=False) as uow:
        for message in uow.outbox.lock_relayable(limit, STALE_AFTER_SECONDS):
            try:
                send_task(DISPATCH_EVENT, [message.id], request_id=message.request_id)
            except BrokerUnavailable as exc:
                uow.outbox.mark_publish_failed(message.id, str(exc))
                break  # the broker is down: the rest would fail too, and slowly
            published.append(message.id)
        uow.outbox.mark_published(published)
        uow.commit()
    return len(published)


class InTransaction:
    """A handler whose writes can share the dispatch's transaction (``@in_transaction``).

    ``work`` writes through the unit of work it is given and returns what to do once that commits
    (e.g. queue the e-mail it recorded), or None. Called as a plain handler, it runs in a unit of
    work of its own. ``handle_message`` instead runs all such handlers of an event in ONE
    transaction that also marks the message processed: one commit per handled event, not one per
    handler plus one for the mark (the worker's largest per-event cost, docs/bench).
    """

    def __init__(self, work: TransactionalWork) -> None:
        self.work = work
        self.__name__ = getattr(work, "__name__", repr(work))
        self.__doc__ = work.__doc__

    def __call__(self, event: Event, context: EventContext) -> None:
        with UnitOfWork() as uow:
            after = self.work(event, context, uow)
            uow.commit()
        if after is not None:
            after()

    def __repr__(self) -> str:
        return f"in_transaction({self.__name__})"


def in_transaction(work: TransactionalWork) -> InTransaction:
    return InTransaction(work)


def handle_message(message_id: int, handlers: HandlerRegistry) -> bool:
    """Run every handler of one outbox message once; False when there was nothing to do.

    Handlers that talk to the outside world (a charge) run first, each in its own units of work;
    then the ``InTransaction`` ones (notifications, the webhook fan-out) share one transaction that
    also marks the message processed — unless an earlier handler failed: then the message stays
    unprocessed and is delivered again (every handler is idempotent). Every handler gets its turn
    even if another fails, so one broken handler never starves the others.
    """
    with ReadOnlyUnitOfWork() as read:
        found = read.outbox.to_dispatch(message_id)
    if found is None:
        return False
    event_type, payload, request_id = found
    event = Event.from_payload(event_type, payload)
    context = EventContext(event_id=message_id, request_id=request_id)
    failures: list[Exception] = []
    joined: list[InTransaction] = []
    for handler in handlers.get(type(event), []):
        if isinstance(handler, InTransaction):
            joined.append(handler)
        else:
            _run(handler, event, context, failures)
    _run_joined(joined, event, context, failures)
    if failures:
        raise failures[0]
    log.info("event_handled", event_type=event.name, outbox_id=message_id)
    return True


def _run(handler: Handler, event: Event, context: EventContext, failures: list[Exception]) -> None:
    try:
        handler(event, context)
    except Exception as exc:
        log.warning(
            "event_handler_failed",
            handler=getattr(handler, "__name__", repr(handler)),
            event_type=event.name,
            outbox_id=context.event_id,
            error=f"{type(exc).__name__}: {exc}",
        )
        failures.append(exc)


def _run_joined(
    joined: Sequence[InTransaction], event: Event, context: EventContext, failures: list[Exception]
) -> None:
    """The shared transaction: every ``InTransaction`` handler, and the mark if nothing failed.

    If it fails, it is rolled back and each of those handlers runs again in a unit of work of its
    own (the path every handler took before), so the others still get their turn. After the
    commit, what the handlers asked for runs (publishing their tasks); if a publish fails, the
    message is marked unprocessed again and the error propagates: the dispatch is retried.
    """
    finish = not failures
    after: list[AfterCommit] = []
    try:
        with UnitOfWork() as uow:
            for handler in joined:
                action = handler.work(event, context, uow)
                if action is not None:
                    after.append(action)
            if finish:
                uow.outbox.mark_processed(context.event_id)
            uow.commit()
    except Exception as exc:
        if not joined:
            failures.append(exc)
            return
        log.info(
            "event_shared_transaction_failed",
            outbox_id=context.event_id,
            error=f"{type(exc).__name__}: {exc}",
        )
        for handler in joined:
            _run(handler, event, context, failures)
        if not failures:
            with UnitOfWork() as uow:
                uow.outbox.mark_processed(context.event_id)
                uow.commit()
        return
    for action in after:
        try:
            action()
        except Exception as exc:
            failures.append(exc)
    if failures and finish:
        with UnitOfWork() as uow:
            uow.outbox.mark_unprocessed(context.event_id)
            uow.commit()
