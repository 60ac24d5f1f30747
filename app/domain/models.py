"""Imports every entity so that the metadata (and Alembic) knows all tables."""

from app.domain.accounts import AccountToken
from app.domain.carts import Cart, CartItem
from app.domain.catalogue import Product, StockMovement
from app.domain.notifications import Notification
from app.domain.operations import Feature, Reconciliation
from app.domain.orders import IdempotencyKey, Order, OrderItem, OrderStatusChange
from app.domain.outbox import OutboxMessage
from app.domain.payments import GatewayEvent, Payment, Refund
from app.domain.users import User

__all__ = [
    "AccountToken",
    "Cart",
    "CartItem",
    "Feature",
    "GatewayEvent",
    "IdempotencyKey",
    "Notification",
    "Order",
    "OrderItem",
    "OrderStatusChange",
    "OutboxMessage",
    "Payment",
    "Product",
    "Reconciliation",
    "Refund",
    "StockMovement",
    "User",
]
