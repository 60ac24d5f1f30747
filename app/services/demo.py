"""Demo data for ``make run``: a customer to log in with and a small catalogue. Idempotent."""

from __future__ import annotations

from decimal import Decimal

from app.domain.actors import SYSTEM
from app.domain.errors import DuplicateEmail
from app.services.catalogue import create_product
from app.services.unit_of_work import UnitOfWork
from app.services.users import register_user

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"  # noqa: S105  (a documented demo credential)
DEMO_ADDRESS = {"line1": "1 Demo Street", "city": "Springfield", "postalCode": "12345", "country": "US"}

# (name, description, price, stock)
DEMO_PRODUCTS: tuple[tuple[str, str, str, int], ...] = (
    ("Espresso cup", "A thick-walled porcelain cup, 80 ml.", "8.50", 120),
    ("Pour-over kettle", "Gooseneck kettle, 1 l, stainless steel.", "39.90", 35),
    ("Burr grinder", "Conical burr hand grinder with 40 settings.", "74.00", 20),
    ("Coffee beans, 1 kg", "Medium roast, single origin.", "24.99", 200),
    ("Paper filters (100)", "Unbleached cone filters, size 02.", "4.75", 500),
    ("Milk frother", "Battery-powered handheld frother.", "12.00", 60),
    ("French press", "Borosilicate glass, 8 cups.", "29.50", 40),
    ("Digital scale", "0.1 g resolution with timer.", "19.95", 45),
    ("Travel mug", "Double-walled, leak-proof, 350 ml.", "17.25", 80),
    ("Descaling tablets (10)", "For espresso machines and kettles.", "9.99", 150),
)


def seed_demo() -> list[str]:
    """Create whatever demo data is missing; returns one line per thing created (none the second time)."""
    done: list[str] = []
    with UnitOfWork() as uow:
        demo_user = uow.users.by_email(DEMO_EMAIL)
        existing = uow.products.existing_names(name for name, *_ in DEMO_PRODUCTS)
    if demo_user is None:
        try:
            user = register_user("Demo Customer", DEMO_EMAIL, DEMO_PASSWORD, DEMO_ADDRESS)
            done.append(f"created customer {DEMO_EMAIL} (password {DEMO_PASSWORD!r}) id={user.id}")
        except DuplicateEmail:  # created by a concurrent seed
            pass
    for name, description, price, stock in DEMO_PRODUCTS:
        if name not in existing:
            product = create_product(SYSTEM, name, description, Decimal(price), stock)
            done.append(f"created product {name!r} (stock {stock}) id={product.id}")
    return done
