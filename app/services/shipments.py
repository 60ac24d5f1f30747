"""Shipment use cases: ship (all or part of) an order with tracking, read shipments, deliver them.

Every write locks the order row first (then its payment), as the checkout and the cancellation
do, so two admins shipping the same units at once are serialised: the second sees what the first
shipped and gets a 409 instead of shipping more than was ordered.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from app.domain.actors import Actor
from app.domain.audit import AuditAction, AuditResource, created, diff
from app.domain.base import utcnow
from app.domain.errors import InvalidTransition, NotFound
from app.domain.fulfilment import Shipment, ShipmentStatus, deliver, ship
from app.domain.orders import visible_order
from app.services.cancellation import with_request_id
from app.services.idempotency import Claim, Idempotent, Replay, run_idempotently
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork, run_in_transaction


@dataclass(frozen=True)
class ShipmentRequest:
    # product → units; None: every unit not shipped yet
    lines: Mapping[uuid.UUID, int] | None
    carrier: str | None
    tracking_number: str | None
    tracking_url: str | None = None


def create_shipment(
    actor: Actor,
    order_id: uuid.UUID,
    request: ShipmentRequest,
    *,
    idempotency: Idempotent[Shipment] | None = None,
) -> Shipment | Replay:
    """Admin: ship units of a paid order (``app.domain.fulfilment.ship``), at most once per key."""
    actor.require_staff()
    shipper = with_request_id(actor)

    def work(claim: Claim[Shipment] | None) -> Shipment:
        return run_in_transaction(lambda uow: _ship(uow, shipper, order_id, request, claim))

    return run_idempotently(idempotency, work)


def _ship(
    uow: UnitOfWork,
    actor: Actor,
    order_id: uuid.UUID,
    request: ShipmentRequest,
    claim: Claim[Shipment] | None,
) -> Shipment:
    order = visible_order(actor, uow.orders.lock(order_id))
    uow.orders.lock_payment(order_id)  # same lock order as a cancellation: order, then payment
    shipped = ship(
        order,
        request.lines,
        carrier=request.carrier,
        tracking_number=request.tracking_number,
        tracking_url=request.tracking_url,
        actor=actor,
        now=utcnow(),
    )
    uow.shipments.add(shipped.shipment)
    if shipped.change is not None:
        uow.orders.add_history(shipped.change)
    uow.orders.save()
    uow.audit(
        actor,
        AuditAction.SHIPMENT_CREATED,
        AuditResource.SHIPMENT,
        shipped.shipment.id,
        created(
            {
                "orderId": order_id,
                "items": {str(item.product_id): item.quantity for item in shipped.shipment.items},
                "carrier": request.carrier,
                "trackingNumber": request.tracking_number,
            }
        ),
    )
    if claim is not None:
        claim.remember(uow, shipped.shipment)
    uow.commit()
    return shipped.shipment


def list_shipments(actor: Actor, order_id: uuid.UUID) -> list[Shipment]:
    """The order's shipments, oldest first (its owner or an admin)."""
    with ReadOnlyUnitOfWork() as uow:
        visible_order(actor, uow.orders.find(order_id))
        return uow.shipments.for_order(order_id)


def get_shipment(actor: Actor, order_id: uuid.UUID, shipment_id: uuid.UUID) -> Shipment:
    with ReadOnlyUnitOfWork() as uow:
        visible_order(actor, uow.orders.find(order_id))
        shipment = uow.shipments.get(order_id, shipment_id)
        if shipment is None:
            raise NotFound("The shipment was not found")
        return shipment


def update_shipment(actor: Actor, order_id: uuid.UUID, shipment_id: uuid.UUID, status: str) -> Shipment:
    """Admin: mark a shipment DELIVERED (again, or SHIPPED while it is: nothing changes). The last
    delivery makes the order DELIVERED."""
    actor.require_staff()
    actor = with_request_id(actor)

    def transaction(uow: UnitOfWork) -> Shipment:
        order = visible_order(actor, uow.orders.lock(order_id))
        shipments = uow.shipments.for_order(order_id)
        shipment = next((s for s in shipments if s.id == shipment_id), None)
        if shipment is None:
            raise NotFound("The shipment was not found")
        if status == ShipmentStatus.SHIPPED:
            if shipment.delivered:
                raise InvalidTransition("A delivered shipment cannot go back to SHIPPED")
            return shipment
        was_delivered = shipment.delivered
        change = deliver(order, shipment, shipments, actor=actor, now=utcnow())
        if change is not None:
            uow.orders.add_history(change)
        uow.orders.save()
        if not was_delivered:
            uow.audit(
                actor,
                AuditAction.SHIPMENT_DELIVERED,
                AuditResource.SHIPMENT,
                shipment.id,
                diff({"status": ShipmentStatus.SHIPPED}, {"status": ShipmentStatus.DELIVERED}),
            )
        uow.commit()
        return shipment

    return run_in_transaction(transaction)
