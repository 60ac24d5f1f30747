"""The order rules without I/O: the factory, exact money, the transition table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.domain import payments as pay
from app.domain.actors import SYSTEM, Actor
from app.domain.catalogue import Product
from app.domain.errors import Forbidden, InsufficientStock, InvalidTransition, ValidationFailed
from app.domain.events import OrderPlaced
from app.domain.orders import (
    CANCELLED,
    DELIVERED,
    PLACED,
    SHIPPED,
    TRANSITIONS,
    CartLine,
    Order,
    plan_transition,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OWNER = uuid.uuid4()


def product(price: str, stock: int, name: str = "P") -> Product:
    return Product(id=uuid.uuid4(), name=name, price=Decimal(price), stock=stock, description="")


def place(lines: dict[Product, int]):
    return Order.place_from(
        user_id=OWNER,
        lines=[CartLine(p.id, q) for p, q in lines.items()],
        products={p.id: p for p in lines},
        now=NOW,
        currency="EUR",
        payment_method=pay.PAYPAL,
        payment_token="pm_card_visa",
        actor=Actor(OWNER, "customer", "req-9"),
    )


def test_the_factory_prices_every_line_exactly_and_totals_them():
    a, b = product("0.10", 100), product("19.99", 5)
    placement = place({a: 3, b: 2})
    order = placement.order
    assert {i.product_id: (i.quantity, i.unit_price, i.line_total) for i in order.items} == {
        a.id: (3, Decimal("0.10"), Decimal("0.30")),
        b.id: (2, Decimal("19.99"), Decimal("39.98")),
    }
    assert order.total_amount == Decimal("40.28")  # not 40.279999…
    assert (order.status, order.version, order.currency, order.order_date) == (PLACED, 1, "EUR", NOW)


def test_the_factory_creates_a_pending_payment_for_the_total_and_the_order_placed_event():
    placement = place({product("2.50", 10): 4})
    payment = placement.order.payment
    assert (payment.status, payment.amount, payment.currency, payment.method) == (
        pay.PENDING,
        Decimal("10.00"),
        "EUR",
        pay.PAYPAL,
    )
    assert placement.order.events == [
        OrderPlaced(order_id=str(placement.order.id), user_id=str(OWNER), payment_id=str(payment.id))
    ]


def test_the_factory_reserves_stock_with_one_ledger_row_per_line():
    a, b = product("1.00", 10), product("1.00", 4)
    placement = place({a: 3, b: 4})
    assert (a.stock, b.stock) == (7, 0)
    assert sorted((m.delta, m.reason, m.stock_after) for m in placement.movements) == [
        (-4, "ORDER_RESERVE", 0),
        (-3, "ORDER_RESERVE", 7),
    ]
    assert {m.order_id for m in placement.movements} == {placement.order.id}
    assert (placement.history.from_status, placement.history.to_status, placement.history.request_id) == (
        None,
        PLACED,
        "req-9",
    )


def test_every_short_line_is_reported_and_no_stock_changes():
    a, b, c = product("1.00", 1), product("1.00", 10), product("1.00", 0)
    with pytest.raises(InsufficientStock) as caught:
        place({a: 2, b: 3, c: 1})
    assert sorted(caught.value.extra["errors"], key=lambda e: e["available"]) == [
        {"productId": str(c.id), "requested": 1, "available": 0},
        {"productId": str(a.id), "requested": 2, "available": 1},
    ]
    assert (a.stock, b.stock, c.stock) == (1, 10, 0)


def test_an_empty_cart_cannot_be_placed():
    with pytest.raises(ValidationFailed):
        place({})


# ---- transitions ----------------------------------------------------------------------------------


def order_in(status: str, payment_status: str = pay.PENDING) -> Order:
    order = Order(id=uuid.uuid4(), user_id=OWNER, status=status, version=1)
    order.payment = pay.Payment(id=uuid.uuid4(), order_id=order.id, status=payment_status)
    return order


ADMIN = Actor(uuid.uuid4(), "admin")
CUSTOMER = Actor(OWNER, "customer")


def test_the_table_lists_exactly_the_spec_transitions():
    assert set(TRANSITIONS) == {(PLACED, SHIPPED), (SHIPPED, DELIVERED), (PLACED, CANCELLED)}


def test_an_admin_ships_a_paid_order_and_delivers_a_shipped_one():
    assert plan_transition(order_in(PLACED, pay.COMPLETED), SHIPPED, ADMIN) is True
    assert plan_transition(order_in(SHIPPED, pay.COMPLETED), DELIVERED, ADMIN) is True


def test_shipping_needs_a_completed_payment():
    with pytest.raises(InvalidTransition):
        plan_transition(order_in(PLACED, pay.PENDING), SHIPPED, ADMIN)


@pytest.mark.parametrize("target", [SHIPPED, DELIVERED])
@pytest.mark.parametrize("status", [PLACED, SHIPPED, DELIVERED, CANCELLED])
def test_the_role_is_checked_before_the_state(target, status):
    with pytest.raises(Forbidden):
        plan_transition(order_in(status, pay.COMPLETED), target, CUSTOMER)


def test_the_owner_and_an_admin_may_cancel_a_placed_order():
    assert plan_transition(order_in(PLACED), CANCELLED, CUSTOMER) is True
    assert plan_transition(order_in(PLACED), CANCELLED, ADMIN) is True
    assert plan_transition(order_in(PLACED), CANCELLED, SYSTEM) is True


def test_another_customer_may_not_cancel():
    with pytest.raises(Forbidden):
        plan_transition(order_in(PLACED), CANCELLED, Actor(uuid.uuid4(), "customer"))


@pytest.mark.parametrize("status", [PLACED, SHIPPED, DELIVERED, CANCELLED])
def test_the_current_status_again_changes_nothing(status):
    assert plan_transition(order_in(status, pay.COMPLETED), status, ADMIN) is False


@pytest.mark.parametrize(
    ("status", "target"),
    [
        (PLACED, DELIVERED),
        (SHIPPED, CANCELLED),
        (DELIVERED, CANCELLED),
        (CANCELLED, SHIPPED),
        (SHIPPED, PLACED),
        (CANCELLED, PLACED),
        (DELIVERED, SHIPPED),
    ],
)
def test_any_other_transition_is_invalid(status, target):
    with pytest.raises(InvalidTransition):
        plan_transition(order_in(status, pay.COMPLETED), target, ADMIN)


def test_a_transition_bumps_the_version_and_records_its_trail():
    order = order_in(PLACED, pay.COMPLETED)
    change = order.move_to(SHIPPED, actor=Actor(ADMIN.user_id, "admin", "r-1"), reason=None, now=NOW)
    assert (order.status, order.version) == (SHIPPED, 2)
    assert (change.from_status, change.to_status, change.actor, change.request_id) == (
        PLACED,
        SHIPPED,
        f"admin:{ADMIN.user_id}",
        "r-1",
    )
    # OrderShipped is the shipment's event (one per shipment, app.domain.fulfilment), not the status's
    assert [e.name for e in order.events] == []
