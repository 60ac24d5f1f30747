"""Queries over products and the stock ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import any_, bindparam, func, inspect, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.domain.base import utcnow
from app.domain.catalogue import Product, ProductView, StockMovement
from app.repositories.queries import like_escaped, page_of
from app.repositories.rows import insert_rows

_SAVE_STOCK = text(
    "UPDATE products SET stock = new.stock, updated_at = :now "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:stocks AS integer[])) AS new(id, stock) "
    "WHERE products.id = new.id"
)
_PRODUCT_BY_ID = select(Product).where(Product.id == bindparam("product_id"))
# Built once (the checkout's): one array parameter, so one cached statement for any number of ids.
# populate_existing: a row already in the session is refreshed with the locked values.
_LOCK_MANY = (
    select(Product)
    .where(Product.id == any_(bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))))
    .order_by(Product.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)
_products = Product.__table__.c
_PRODUCT_VIEW = select(
    _products.id,
    _products.name,
    _products.description,
    _products.price,
    _products.stock,
    _products.low_stock_threshold,
).where(_products.id == bindparam("product_id"))


class ProductReads:
    """Products as they are read: a Core row straight into ``ProductView``, no session."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def get(self, product_id: uuid.UUID) -> ProductView | None:
        row = self.connection.execute(_PRODUCT_VIEW, {"product_id": product_id}).first()
        return None if row is None else ProductView(*row)


class ProductRepository:
    """Products record ``ProductLowStock`` when a stock change crosses their threshold: every product
    locked or added here is in ``seen``, where the unit of work collects the events on commit."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.seen: list[Product] = []

    def get(self, product_id: uuid.UUID) -> Product | None:
        # A statement built once: ``Session.get`` built, annotated and keyed a new SELECT on every
        # call, a visible share of a GET /products/{id} in its profile. No identity-map shortcut
        # needed: each request has a new session.
        return self.session.scalars(_PRODUCT_BY_ID, {"product_id": product_id}).first()

    def lock(self, product_id: uuid.UUID) -> Product | None:
        """``SELECT … FOR UPDATE`` one product (the row lock serialises its stock changes)."""
        stmt = select(Product).where(Product.id == product_id).with_for_update()
        # populate_existing: a row already in the session is refreshed with the locked values.
        product = self.session.scalars(stmt.execution_options(populate_existing=True)).first()
        if product is not None:
            self.seen.append(product)
        return product

    def lock_many(self, product_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Product]:
        """Lock products in id order in one statement, so concurrent checkouts never deadlock."""
        ids = sorted(set(product_ids))
        if not ids:
            return {}
        locked = {p.id: p for p in self.session.scalars(_LOCK_MANY, {"ids": ids})}
        self.seen.extend(locked.values())
        return locked

    def add(self, product: Product) -> None:
        """Insert a new product now (flush): its ledger rows reference it."""
        self.session.add(product)
        self.session.flush()
        self.seen.append(product)

    def save_stock(self, products: Iterable[Product]) -> None:
        """Write the locked products' new stock with one plain UPDATE, instead of the ORM's
        flush; their stock then counts as saved in the session."""
        now = utcnow()
        changed = [p for p in products if inspect(p).attrs.stock.history.has_changes()]
        if not changed:
            return
        # One statement for any number of products (not one per product: an executemany).
        self.session.execute(
            _SAVE_STOCK,
            {"ids": [p.id for p in changed], "stocks": [p.stock for p in changed], "now": now},
        )
        for product in changed:
            set_committed_value(product, "stock", product.stock)
            set_committed_value(product, "updated_at", now)

    def low_stock(self, page: int, page_size: int) -> tuple[list[Product], int]:
        """Products at or below their threshold (0: no alert), lowest stock first."""
        where = (Product.low_stock_threshold > 0) & (Product.stock <= Product.low_stock_threshold)
        stmt = select(Product).where(where).order_by(Product.stock, Product.name, Product.id)
        return page_of(self.session, stmt, page, page_size)

    def existing_names(self, names: Iterable[str]) -> set[str]:
        """Which of these product names are already in the catalogue."""
        wanted = list(set(names))
        if not wanted:
            return set()
        return set(self.session.scalars(select(Product.name).where(Product.name.in_(wanted))))

    def search(self, q: str | None, page: int, page_size: int) -> tuple[list[Product], int]:
        stmt = select(Product)
        if q:
            stmt = stmt.where(Product.name.ilike(f"%{like_escaped(q)}%", escape="\\"))
        return page_of(self.session, stmt.order_by(Product.name, Product.id), page, page_size)


class StockLedgerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, movement: StockMovement) -> None:
        self.session.add(movement)

    def add_all(self, movements: Sequence[StockMovement]) -> None:
        self.session.add_all(list(movements))

    def insert_all(self, movements: Sequence[StockMovement]) -> None:
        """The rows with one plain INSERT (the checkout's hot path; they stay out of the session)."""
        insert_rows(self.session, movements)

    def balance(self, product_id: uuid.UUID) -> int:
        total = self.session.scalar(
            select(func.coalesce(func.sum(StockMovement.delta), 0)).where(
                StockMovement.product_id == product_id
            )
        )
        return int(total or 0)
