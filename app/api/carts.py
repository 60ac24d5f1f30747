"""Carts: one open cart per user, created on first use, at current prices."""

from __future__ import annotations

import uuid
from typing import Any

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.schemas import Money, StrictSchema
from app.api.security import current_actor, self_only, self_or_admin
from app.domain.carts import MAX_LINE_QUANTITY, CartView
from app.services import carts as service

blp = Blueprint(
    "carts",
    __name__,
    description=(
        "One open cart per user, created on first use; its cartId stays the same after checkout "
        "(the cart is emptied). Prices are the products' current prices. A line holds at most the "
        f"product's current stock and at most {MAX_LINE_QUANTITY} units: adding beyond either is a "
        "409 (the request itself was valid; the resulting line is not). Only the user may change "
        "their cart (an admin gets 403); an admin may read it."
    ),
)


class StrictInteger(ma.fields.Integer):
    """An integer, not a float with a zero fraction, a numeric string or a boolean."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)  # type: ignore[no-any-return]


def quantity_field(**kwargs: Any) -> StrictInteger:
    return StrictInteger(
        validate=ma.validate.Range(min=1, max=MAX_LINE_QUANTITY),
        metadata={"example": 2, "description": f"1 to {MAX_LINE_QUANTITY}"},
        **kwargs,
    )


class CartItemSchema(ma.Schema):
    productId = ma.fields.UUID(attribute="product_id", required=True)
    productName = ma.fields.String(attribute="product_name", required=True)
    quantity = ma.fields.Integer(required=True)
    price = Money(required=True, metadata={"description": "The product's current unit price"})
    subtotal = Money(required=True, metadata={"description": "price * quantity"})


class CartSchema(ma.Schema):
    cartId = ma.fields.UUID(attribute="cart_id", required=True, allow_none=True)
    userId = ma.fields.UUID(attribute="user_id", required=True)
    cartItems = ma.fields.List(ma.fields.Nested(CartItemSchema), attribute="lines", required=True)
    totalAmount = Money(attribute="total_amount", required=True)
    currency = ma.fields.String(required=True, metadata={"example": "USD"})


class CartAddedSchema(ma.Schema):
    message = ma.fields.String(required=True, metadata={"example": "Item added to cart"})
    cart = ma.fields.Nested(CartSchema, required=True)


class CartAddSchema(StrictSchema):
    productId = ma.fields.UUID(required=True)
    quantity = quantity_field(required=True)


class CartQuantitySchema(StrictSchema):
    quantity = quantity_field(required=True)


def _currency() -> str:
    return str(current_app.config["CURRENCY"])


@blp.route("/cart/<uuid:user_id>")
class CartByUser(MethodView):
    @self_or_admin("user_id")
    @blp.response(200, CartSchema)
    def get(self, user_id: uuid.UUID) -> CartView:
        """View the cart at current prices (the user or an admin); created on the user's first use.

        An admin's read writes nothing: a user without a cart yet reads as an empty cart with
        `cartId` null."""
        own = current_actor().user_id == user_id
        return service.get_cart(user_id, _currency(), create=own)

    @self_only("user_id")
    @blp.response(204)
    def delete(self, user_id: uuid.UUID) -> None:
        """Empty the cart (its cartId stays)."""
        service.empty_cart(user_id)


@blp.route("/cart/<uuid:user_id>/add")
class CartAdd(MethodView):
    @self_only("user_id")
    @blp.arguments(CartAddSchema)
    @blp.response(201, CartAddedSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="Unknown product (or another user's cart)")
    @blp.alt_response(
        409,
        response="CONFLICT",
        description="The line would hold more than the product's stock (errors: "
        "[{productId, requested, available}]) or more than 1000 units",
    )
    def post(self, data: dict[str, Any], user_id: uuid.UUID) -> dict[str, Any]:
        """Add a product; adding one already in the cart adds to its quantity."""
        cart = service.add_item(user_id, data["productId"], data["quantity"], _currency())
        return {"message": "Item added to cart", "cart": cart}


@blp.route("/cart/<uuid:user_id>/items/<uuid:product_id>")
class CartItem(MethodView):
    @self_only("user_id")
    @blp.arguments(CartQuantitySchema)
    @blp.response(200, CartSchema)
    @blp.alt_response(404, response="NOT_FOUND", description="Unknown product, or not in the cart")
    @blp.alt_response(
        409, response="CONFLICT", description="The quantity exceeds the product's current stock"
    )
    def put(self, data: dict[str, Any], user_id: uuid.UUID, product_id: uuid.UUID) -> CartView:
        """Set a line's quantity (updateQuantity)."""
        return service.update_item(user_id, product_id, data["quantity"], _currency())

    @self_only("user_id")
    @blp.response(204)
    @blp.alt_response(404, response="NOT_FOUND", description="The product is not in the cart")
    def delete(self, user_id: uuid.UUID, product_id: uuid.UUID) -> None:
        """Remove a line (removeItem)."""
        service.remove_item(user_id, product_id)
