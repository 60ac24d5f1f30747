"""The catalogue: browse products (anyone); create, edit and restock them (admins)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import marshmallow as ma
from flask import Response, current_app, jsonify, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.rendering import compiled
from app.api.schemas import MAX_MONEY, Money, PageArgsSchema, StrictSchema, page_body, page_of
from app.api.security import admin_only, current_actor, public
from app.domain.catalogue import ADMIN_MOVEMENT_REASONS, Product, ProductView, StockMovement
from app.services import catalogue as service
from app.services.catalogue import MAX_STOCK

blp = Blueprint("products", __name__, description="Products and their stock")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Must not be blank.")


def _product_name(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        validate=[ma.validate.Length(min=1, max=200), _not_blank],
        metadata={"example": "Espresso cup"},
        **kwargs,
    )


def _description(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(validate=ma.validate.Length(max=5000), **kwargs)


# A zero price would give goods away through a typo (and a zero-amount charge the gateway refuses).
MIN_PRICE = Decimal("0.01")


def _price(**kwargs: Any) -> Money:
    return Money(
        validate=ma.validate.Range(min=MIN_PRICE, max=MAX_MONEY),
        metadata={"description": "At least 0.01, at most two decimals", "example": 12.5},
        **kwargs,
    )


def _threshold(**kwargs: Any) -> ma.fields.Integer:
    return ma.fields.Integer(
        strict=True,
        validate=ma.validate.Range(min=0, max=MAX_STOCK),
        metadata={
            "description": "Low-stock threshold: a stock change from above it to at or below it e-mails "
            "the admins once (ProductLowStock); 0 turns it off. Default LOW_STOCK_THRESHOLD [5]"
        },
        **kwargs,
    )


class ProductSchema(ma.Schema):
    productId = ma.fields.UUID(attribute="id", required=True)
    productName = ma.fields.String(attribute="name", required=True)
    description = ma.fields.String(required=True)
    price = Money(required=True)
    currency = ma.fields.Method("_currency", metadata={"type": "string", "example": "USD"})
    stock = ma.fields.Integer(required=True)
    lowStockThreshold = ma.fields.Integer(
        attribute="low_stock_threshold",
        required=True,
        metadata={"description": "At or below this stock the admins are alerted (0: never)"},
    )

    def _currency(self, _: Product | ProductView) -> str:
        return str(current_app.config["CURRENCY"])


class ProductCreateSchema(StrictSchema):
    productName = _product_name(required=True, attribute="name")
    description = _description(required=True)
    price = _price(required=True)
    stock = ma.fields.Integer(
        required=True,
        strict=True,
        validate=ma.validate.Range(min=0, max=MAX_STOCK),
        metadata={"description": "Initial stock, recorded as the first RESTOCK movement"},
    )
    lowStockThreshold = _threshold()


class ProductUpdateSchema(StrictSchema):
    """Stock is not editable here: it changes only through stock movements."""

    productName = _product_name(attribute="name")
    description = _description()
    price = _price()
    lowStockThreshold = _threshold(attribute="low_stock_threshold")


class ProductListArgsSchema(PageArgsSchema):
    q = ma.fields.String(
        validate=ma.validate.Length(max=200), metadata={"description": "Case-insensitive search in names"}
    )


class StockMovementCreateSchema(StrictSchema):
    delta = ma.fields.Integer(
        required=True,
        strict=True,
        validate=[
            ma.validate.Range(min=-MAX_STOCK, max=MAX_STOCK),
            ma.validate.NoneOf([0], error="Must not be zero."),
        ],
        metadata={"description": "Added to the stock (negative removes)", "example": 25},
    )
    reason = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(ADMIN_MOVEMENT_REASONS),
        metadata={"enum_component": "AdminStockMovementReason"},
    )
    note = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=500))


class StockMovementSchema(ma.Schema):
    movementId = ma.fields.UUID(attribute="id", required=True)
    productId = ma.fields.UUID(attribute="product_id", required=True)
    delta = ma.fields.Integer(required=True)
    reason = ma.fields.String(required=True, metadata={"enum_component": "StockMovementReason"})
    note = ma.fields.String(allow_none=True)
    stockAfter = ma.fields.Integer(attribute="stock_after", required=True)
    createdAt = ma.fields.DateTime(attribute="created_at", required=True)


_LOCATION = {"Location": {"schema": {"type": "string"}}}
# GET /products/{id} renders with ProductSchema compiled once (app/api/rendering.py).
PRODUCT_BODY = compiled(ProductSchema())


@blp.route("/products")
class Products(MethodView):
    @public
    @blp.arguments(ProductListArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, page_of(ProductSchema))
    def get(self, page: int, pageSize: int, q: str | None = None) -> dict[str, Any]:
        """List products, by name; `q` searches names."""
        products, total = service.list_products(q, page, pageSize)
        return page_body(products, total, page, pageSize)

    @admin_only
    @blp.arguments(ProductCreateSchema)
    @blp.response(201, ProductSchema, headers=_LOCATION)
    def post(self, data: dict[str, Any]) -> tuple[Product, dict[str, str]]:
        """Create a product (admin); its initial stock is its first stock movement."""
        product = service.create_product(
            current_actor(),
            data["name"],
            data["description"],
            data["price"],
            data["stock"],
            data.get("lowStockThreshold", int(current_app.config["LOW_STOCK_THRESHOLD"])),
        )
        return product, {"Location": url_for("products.ProductById", product_id=product.id)}


@blp.route("/products/<uuid:product_id>")
class ProductById(MethodView):
    @public
    @blp.response(200, ProductSchema)
    def get(self, product_id: uuid.UUID) -> Response:
        """View a product with its current price and stock."""
        return jsonify(PRODUCT_BODY(service.get_product(product_id)))

    @admin_only
    @blp.arguments(ProductUpdateSchema)
    @blp.response(200, ProductSchema)
    def patch(self, data: dict[str, Any], product_id: uuid.UUID) -> Product:
        """Edit a product's name, description, price or low-stock threshold (admin); stock changes by
        movements."""
        return service.update_product(current_actor(), product_id, data)


@blp.route("/products/<uuid:product_id>/stock-movements")
class StockMovements(MethodView):
    @admin_only
    @blp.arguments(StockMovementCreateSchema)
    @blp.response(201, StockMovementSchema)
    @blp.alt_response(409, response="CONFLICT", description="The stock would go below zero")
    def post(self, data: dict[str, Any], product_id: uuid.UUID) -> StockMovement:
        """Restock or adjust a product's stock (admin); it never goes below zero."""
        return service.record_stock_movement(
            current_actor(), product_id, data["delta"], data["reason"], data.get("note")
        )


@blp.route("/admin/low-stock")
class LowStock(MethodView):
    @admin_only
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, page_of(ProductSchema))
    def get(self, page: int, pageSize: int) -> dict[str, Any]:
        """Products at or below their low-stock threshold, lowest stock first (admin)."""
        products, total = service.list_low_stock(current_actor(), page, pageSize)
        return page_body(products, total, page, pageSize)
