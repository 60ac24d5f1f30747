"""SPEC §5.1 and §5.2 as rules, without I/O: shipments, the order following its units, returns."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from app.domain import payments as pay
from app.domain.actors import Actor
from app.domain.catalogue import REASON_RETURN, Product, change_stock
from app.domain.errors import InvalidTransition, ReturnTooLarge, ShipmentTooLarge, ValidationFailed
from app.domain.events import (
    OrderDelivered,
    OrderShipped,
    ProductLowStock,
    ReturnReceived,
    ReturnRefunded,
    ReturnRequested,
)
from app.domain.fulfilment import ShipmentStatus, deliver, deliver_all, ship
from app.domain.orders import CANCELLED, DELIVERED, PLACED, SHIPPED, CartLine, Order, allowed_transitions
from app.domain.returns import Delivery, ReturnStatus, request_return, returnable_units

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OWNER = uuid.uuid4()
CUSTOMER = Actor(OWNER, "customer")
ADMIN = Actor(uuid.uuid4(), "admin")
STRANGER = Actor(uuid.uuid4(), "customer")


def product(price: str = "10.00", stock: int = 100) -> Product:
    return Product(
        id=uuid.uuid4(), name="P", price=Decimal(price), stock=stock, description="", low_stock_threshold=0
    )


def paid_order(*lines: tuple[Product, int], paid: bool = True) -> Order:
    placement = Order.place_from(
        user_id=OWNER,
        lines=[CartLine(p.id, q) for p, q in lines],
        products={p.id: p for p, _ in lines},
        now=NOW,
        currency="USD",
        payment_method=pay.CREDIT_CARD,
        payment_token="pm_card_visa",
        actor=CUSTOMER,
        shipping_address={"line1": "1 Main St", "city": "X", "postalCode": "1", "country": "US"},
    )
    order = placement.order
    order.events.clear()
    if paid:
        assert order.payment is not None
        order.payment.status = pay.COMPLETED
    return order


def shipped_of(order: Order) -> dict[uuid.UUID, int]:
    return {i.product_id: i.quantity_shipped for i in order.items}


# ---- shipments -------------------------------------------------------------------------------------


def test_the_order_keeps_the_address_it_was_placed_with_as_a_copy():
    address = {"line1": "1 Main St", "city": "X", "postalCode": "1", "country": "US"}
    a = product()
    placement = Order.place_from(
        user_id=OWNER, lines=[CartLine(a.id, 1)], products={a.id: a}, now=NOW, currency="USD",
        payment_method=pay.CREDIT_CARD, payment_token="t", actor=CUSTOMER, shipping_address=address,
    )  # fmt: skip
    address["city"] = "Changed later"
    assert placement.order.shipping_address["city"] == "X"


def test_a_partial_shipment_keeps_the_order_placed_and_partially_shipped():
    a, b = product(), product()
    order = paid_order((a, 3), (b, 1))
    shipped = ship(
        order, {a.id: 2}, carrier="UPS", tracking_number="1Z", tracking_url=None, actor=ADMIN, now=NOW
    )
    assert shipped.change is None
    assert order.status == PLACED
    assert order.fulfillment_status == "PARTIALLY_SHIPPED"
    assert shipped_of(order) == {a.id: 2, b.id: 0}
    assert [(i.product_id, i.quantity) for i in shipped.shipment.items] == [(a.id, 2)]
    assert shipped.shipment.status == ShipmentStatus.SHIPPED
    assert order.events == [
        OrderShipped(
            order_id=str(order.id), user_id=str(OWNER), shipment_id=str(shipped.shipment.id),
            carrier="UPS", tracking_number="1Z", tracking_url=None,
        )
    ]  # fmt: skip


def test_shipping_every_remaining_unit_makes_the_order_shipped_with_a_history_row():
    a, b = product(), product()
    order = paid_order((a, 3), (b, 1))
    ship(order, {a.id: 2}, carrier="UPS", tracking_number="1", tracking_url=None, actor=ADMIN, now=NOW)
    last = ship(order, None, carrier="DHL", tracking_number="2", tracking_url=None, actor=ADMIN, now=NOW)
    assert {i.product_id: i.quantity for i in last.shipment.items} == {a.id: 1, b.id: 1}
    assert order.status == SHIPPED and order.fulfillment_status == "SHIPPED"
    assert last.change is not None and (last.change.from_status, last.change.to_status) == (PLACED, SHIPPED)
    assert last.change.actor == ADMIN.label
    assert [e.carrier for e in order.events] == ["UPS", "DHL"]  # one OrderShipped per shipment


def test_a_quantity_above_what_is_left_to_ship_is_a_conflict_listing_every_such_line():
    a, b = product(), product()
    order = paid_order((a, 3), (b, 1))
    ship(order, {a.id: 2}, carrier="UPS", tracking_number="1", tracking_url=None, actor=ADMIN, now=NOW)
    with pytest.raises(ShipmentTooLarge) as caught:
        ship(
            order,
            {a.id: 2, b.id: 5},
            carrier="UPS",
            tracking_number="2",
            tracking_url=None,
            actor=ADMIN,
            now=NOW,
        )
    assert caught.value.extra["errors"] == sorted(
        [
            {"productId": str(a.id), "requested": 2, "remaining": 1},
            {"productId": str(b.id), "requested": 5, "remaining": 1},
        ],
        key=lambda e: e["productId"],
    )
    assert shipped_of(order) == {a.id: 2, b.id: 0}  # nothing changed


def test_a_product_not_in_the_order_is_a_validation_error():
    order = paid_order((product(), 1))
    with pytest.raises(ValidationFailed):
        ship(
            order,
            {uuid.uuid4(): 1},
            carrier="UPS",
            tracking_number="1",
            tracking_url=None,
            actor=ADMIN,
            now=NOW,
        )


def test_an_unpaid_order_does_not_ship():
    order = paid_order((product(), 1), paid=False)
    with pytest.raises(InvalidTransition, match="COMPLETED"):
        ship(order, None, carrier="UPS", tracking_number="1", tracking_url=None, actor=ADMIN, now=NOW)


def test_nothing_left_to_ship_and_cancelled_orders_are_conflicts():
    order = paid_order((product(), 1))
    ship(order, None, carrier="UPS", tracking_number="1", tracking_url=None, actor=ADMIN, now=NOW)
    with pytest.raises(InvalidTransition, match="Nothing"):
        ship(order, None, carrier="UPS", tracking_number="2", tracking_url=None, actor=ADMIN, now=NOW)
    cancelled = paid_order((product(), 1))
    cancelled.status = CANCELLED
    with pytest.raises(InvalidTransition):
        ship(cancelled, None, carrier="UPS", tracking_number="1", tracking_url=None, actor=ADMIN, now=NOW)


def test_the_order_is_delivered_when_its_last_shipment_is_and_only_then():
    a = product()
    order = paid_order((a, 2))
    first = ship(
        order, {a.id: 1}, carrier="UPS", tracking_number="1", tracking_url=None, actor=ADMIN, now=NOW
    )
    assert deliver(order, first.shipment, [first.shipment], actor=ADMIN, now=NOW) is None
    assert order.status == PLACED  # delivered, but a unit has not shipped yet
    second = ship(order, None, carrier="UPS", tracking_number="2", tracking_url=None, actor=ADMIN, now=NOW)
    order.events.clear()
    later = NOW + timedelta(days=1)
    change = deliver(order, second.shipment, [first.shipment, second.shipment], actor=ADMIN, now=later)
    assert change is not None and change.to_status == DELIVERED
    assert order.fulfillment_status == "DELIVERED"
    assert second.shipment.delivered_at == later
    assert order.events == [
        OrderDelivered(order_id=str(order.id), user_id=str(OWNER), shipment_id=str(second.shipment.id))
    ]
    assert deliver(order, second.shipment, [first.shipment, second.shipment], actor=ADMIN, now=later) is None


def test_delivering_the_order_delivers_every_shipment():
    a = product()
    order = paid_order((a, 2))
    s1 = ship(
        order, {a.id: 1}, carrier="UPS", tracking_number="1", tracking_url=None, actor=ADMIN, now=NOW
    ).shipment
    s2 = ship(
        order, None, carrier=None, tracking_number=None, tracking_url=None, actor=ADMIN, now=NOW
    ).shipment
    change = deliver_all(order, [s1, s2], actor=ADMIN, now=NOW)
    assert change.to_status == DELIVERED
    assert [s.status for s in (s1, s2)] == ["DELIVERED", "DELIVERED"]


def test_a_partly_shipped_order_cannot_be_cancelled():
    a = product()
    order = paid_order((a, 2))
    assert "CANCELLED" in allowed_transitions(order, CUSTOMER)
    ship(order, {a.id: 1}, carrier="UPS", tracking_number="1", tracking_url=None, actor=ADMIN, now=NOW)
    assert allowed_transitions(order, CUSTOMER) == []
    assert allowed_transitions(order, ADMIN) == ["SHIPPED"]
    with pytest.raises(InvalidTransition, match="left"):
        order.cancel(payment=order.payment, products={a.id: a}, actor=CUSTOMER, reason=None, now=NOW)


def test_allowed_transitions_are_those_of_the_caller():
    order = paid_order((product(), 1), paid=False)
    assert allowed_transitions(order, CUSTOMER) == ["CANCELLED"]
    assert allowed_transitions(order, ADMIN) == ["CANCELLED"]  # not SHIPPED: unpaid
    assert allowed_transitions(order, STRANGER) == []
    order.payment.status = pay.COMPLETED
    assert allowed_transitions(order, ADMIN) == ["SHIPPED", "CANCELLED"]
    order.status = SHIPPED
    assert allowed_transitions(order, CUSTOMER) == []
    assert allowed_transitions(order, ADMIN) == ["DELIVERED"]


# ---- returns ---------------------------------------------------------------------------------------


def delivered(order: Order, days_ago: float) -> list[Delivery]:
    return [Delivery(i.product_id, i.quantity, NOW - timedelta(days=days_ago)) for i in order.items]


def test_a_return_of_delivered_units_within_the_window_is_refunded_at_the_price_paid():
    a, b = product("19.99"), product("0.10")
    order = paid_order((a, 2), (b, 3))
    ret = request_return(
        order, {a.id: 1, b.id: 3}, reason="DAMAGED", note="box crushed",
        deliveries=delivered(order, 29.9), held={}, now=NOW, window_days=30,
    )  # fmt: skip
    assert ret.status == ReturnStatus.REQUESTED
    assert {i.product_id: i.refund_amount for i in ret.items} == {
        a.id: Decimal("19.99"),
        b.id: Decimal("0.30"),
    }
    assert ret.refund_amount == Decimal("20.29")
    assert order.events == [
        ReturnRequested(
            order_id=str(order.id), user_id=str(OWNER), return_id=str(ret.id), refund_amount="20.29"
        )
    ]


def test_outside_the_window_nothing_is_returnable():
    a = product()
    order = paid_order((a, 2))
    with pytest.raises(ReturnTooLarge, match="window") as caught:
        request_return(
            order,
            {a.id: 1},
            reason="OTHER",
            note=None,
            deliveries=delivered(order, 30),
            held={},
            now=NOW,
            window_days=30,
        )
    assert caught.value.extra["errors"] == [{"productId": str(a.id), "requested": 1, "returnable": 0}]


def test_a_window_of_zero_days_accepts_no_returns():
    a = product()
    order = paid_order((a, 2))
    with pytest.raises(ReturnTooLarge):
        request_return(
            order,
            {a.id: 1},
            reason="OTHER",
            note=None,
            deliveries=delivered(order, 0),
            held={},
            now=NOW,
            window_days=0,
        )


def test_units_not_delivered_are_not_returnable():
    a, b = product(), product()
    order = paid_order((a, 2), (b, 1))
    only_a = [Delivery(a.id, 2, NOW)]
    with pytest.raises(ReturnTooLarge) as caught:
        request_return(
            order, {b.id: 1}, reason="OTHER", note=None, deliveries=only_a, held={}, now=NOW, window_days=30
        )
    assert caught.value.extra["errors"] == [{"productId": str(b.id), "requested": 1, "returnable": 0}]


def test_units_held_by_returns_that_are_not_rejected_cannot_be_asked_for_again():
    a = product()
    deliveries = [Delivery(a.id, 3, NOW)]
    assert returnable_units(deliveries, {a.id: 2}, now=NOW, window_days=30) == {a.id: 1}
    assert returnable_units(deliveries, {a.id: 3}, now=NOW, window_days=30) == {a.id: 0}
    # a delivery outside the window does not add returnable units, but units held still count
    old_and_new = [Delivery(a.id, 2, NOW - timedelta(days=40)), Delivery(a.id, 1, NOW)]
    assert returnable_units(old_and_new, {}, now=NOW, window_days=30) == {a.id: 1}
    assert returnable_units(old_and_new, {a.id: 2}, now=NOW, window_days=30) == {a.id: 1}
    assert returnable_units(old_and_new, {a.id: 3}, now=NOW, window_days=30) == {a.id: 0}


def test_a_product_not_in_the_order_or_an_unknown_reason_is_a_validation_error():
    a = product()
    order = paid_order((a, 1))
    with pytest.raises(ValidationFailed):
        request_return(
            order,
            {uuid.uuid4(): 1},
            reason="OTHER",
            note=None,
            deliveries=delivered(order, 1),
            held={},
            now=NOW,
            window_days=30,
        )
    with pytest.raises(ValidationFailed):
        request_return(
            order,
            {a.id: 1},
            reason="BORED",
            note=None,
            deliveries=delivered(order, 1),
            held={},
            now=NOW,
            window_days=30,
        )


def test_receiving_restocks_through_the_ledger_counts_the_units_and_refund_completes_it():
    a = product(stock=4)
    order = paid_order((a, 2))  # stock 2 after the order
    ret = request_return(
        order,
        {a.id: 2},
        reason="OTHER",
        note=None,
        deliveries=delivered(order, 1),
        held={},
        now=NOW,
        window_days=30,
    )
    order.events.clear()
    movements = ret.receive(order, {a.id: a}, restock=True, actor=ADMIN, now=NOW)
    assert [(m.reason, m.delta, m.stock_after) for m in movements] == [(REASON_RETURN, 2, 4)]
    assert a.stock == 4
    assert order.items[0].quantity_returned == 2
    assert (ret.status, ret.restocked, ret.received_at) == ("RECEIVED", True, NOW)
    assert isinstance(order.events[0], ReturnReceived)
    assert ret.receive(order, {a.id: a}, restock=True, actor=ADMIN, now=NOW) == []  # again: nothing
    assert ret.mark_refunded(order, NOW) is True
    assert ret.status == "REFUNDED" and isinstance(order.events[-1], ReturnRefunded)
    with pytest.raises(InvalidTransition):
        ret.reject()


def test_receiving_without_restock_leaves_the_stock_alone():
    a = product(stock=4)
    order = paid_order((a, 2))
    ret = request_return(
        order,
        {a.id: 1},
        reason="DAMAGED",
        note=None,
        deliveries=delivered(order, 1),
        held={},
        now=NOW,
        window_days=30,
    )
    assert ret.receive(order, {a.id: a}, restock=False, actor=ADMIN, now=NOW) == []
    assert a.stock == 2 and ret.restocked is False and order.items[0].quantity_returned == 1


def test_a_rejected_return_cannot_be_received_and_a_requested_one_cannot_be_refunded():
    a = product()
    order = paid_order((a, 2))
    ret = request_return(
        order,
        {a.id: 1},
        reason="OTHER",
        note=None,
        deliveries=delivered(order, 1),
        held={},
        now=NOW,
        window_days=30,
    )
    with pytest.raises(InvalidTransition):
        ret.mark_refunded(order, NOW)
    assert ret.reject() is True
    assert ret.reject() is False
    assert not ret.counts_against_delivered
    with pytest.raises(InvalidTransition):
        ret.receive(order, {a.id: a}, restock=True, actor=ADMIN, now=NOW)


# ---- low stock -------------------------------------------------------------------------------------


def test_low_stock_is_raised_once_per_crossing_from_above_to_at_or_below_the_threshold():
    p = Product(
        id=uuid.uuid4(), name="Lamp", price=Decimal("1"), stock=7, description="", low_stock_threshold=5
    )
    change_stock(p, -1, "ADJUSTMENT")  # 6: above
    assert p.events == []
    change_stock(p, -1, "ADJUSTMENT")  # 5: at the threshold
    assert p.events == [
        ProductLowStock(product_id=str(p.id), product_name="Lamp", stock=5, low_stock_threshold=5)
    ]
    change_stock(p, -2, "ADJUSTMENT")  # 3: still below, no new crossing
    assert len(p.events) == 1
    change_stock(p, 10, "RESTOCK")  # 13: above again
    change_stock(p, -13, "ADJUSTMENT")  # 0: a second crossing
    assert [e.stock for e in p.events] == [5, 0]


def test_a_threshold_of_zero_turns_the_alert_off():
    p = Product(
        id=uuid.uuid4(), name="Lamp", price=Decimal("1"), stock=3, description="", low_stock_threshold=0
    )
    change_stock(p, -3, "ADJUSTMENT")
    assert p.events == []
