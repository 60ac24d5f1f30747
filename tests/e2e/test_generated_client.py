"""A client generated from the served /openapi.json by openapi-python-client places an order.

The generator must take the document whole (any warning fails the test: a model it skips is a
response a client cannot parse), and the generated, typed client then drives the real web process:
register, log in, create a product (admin), fill the cart, check out, read the order back as an
``Order`` model whose enums are the named components.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import requests

from tests.e2e.conftest import BIN, Stack
from tests.e2e.harness import PASSWORD, ShopClient


def generate(stack: Stack, target: Path) -> str:
    document = target.parent / "openapi.json"
    document.write_bytes(requests.get(stack.url("/openapi.json"), timeout=10).content)
    done = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            *("generate", "--path", str(document), "--output-path", str(target), "--meta", "none"),
        ],
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "warning" not in output.lower() and "error" not in output.lower(), output
    return output


def test_a_generated_client_takes_the_whole_document_and_places_an_order(stack: Stack, tmp_path: Path):
    stack.start("web")
    stack.wait_web()
    package = f"oms_client_{uuid.uuid4().hex[:8]}"
    generate(stack, tmp_path / package)
    sys.path.insert(0, str(tmp_path))
    try:
        client_mod = importlib.import_module(f"{package}.client")
        models = importlib.import_module(f"{package}.models")
        post_users = importlib.import_module(f"{package}.api.users.post_users")
        post_token = importlib.import_module(f"{package}.api.auth.post_auth_token")
        post_products = importlib.import_module(f"{package}.api.products.post_products")
        add_to_cart = importlib.import_module(f"{package}.api.carts.post_cart_user_id_add")
        post_orders = importlib.import_module(f"{package}.api.orders.post_orders")
        get_order = importlib.import_module(f"{package}.api.orders.get_orders_order_id")
        list_orders = importlib.import_module(f"{package}.api.orders.get_orders")
    finally:
        sys.path.remove(str(tmp_path))

    anonymous = client_mod.Client(base_url=stack.base_url, raise_on_unexpected_status=True)
    email = f"generated-{uuid.uuid4().hex[:10]}@example.com"
    user = post_users.sync(
        client=anonymous,
        body=models.UserCreate(
            name="Generated Client",
            email=email,
            password=PASSWORD,
            address=models.Address(line1="1 Main St", city="Springfield", postal_code="12345", country="US"),
        ),
    )
    assert isinstance(user, models.User), user
    token = post_token.sync(client=anonymous, body=models.TokenRequest(email=email, password=PASSWORD))
    assert isinstance(token, models.Token), token
    customer = client_mod.AuthenticatedClient(
        base_url=stack.base_url, token=token.access_token, raise_on_unexpected_status=True
    )

    _, admin_token = ShopClient(stack).sign_up("admin")  # admins are made by the CLI
    admin = client_mod.AuthenticatedClient(
        base_url=stack.base_url, token=admin_token, raise_on_unexpected_status=True
    )
    product = post_products.sync(
        client=admin,
        body=models.ProductCreate(product_name="Generated mug", description="", price=12.5, stock=5),
    )
    assert isinstance(product, models.Product), product

    added = add_to_cart.sync(
        user_id=user.user_id, client=customer, body=models.CartAdd(product_id=product.product_id, quantity=2)
    )
    assert isinstance(added, models.CartAdded), added
    placed = post_orders.sync(
        client=customer,
        body=models.OrderCreate(
            user_id=user.user_id, cart_id=added.cart.cart_id, payment_method=models.PaymentMethod.PAYPAL
        ),
    )
    assert isinstance(placed, models.Order), placed
    assert placed.status is models.OrderStatus.PLACED
    assert placed.total_amount == 25.0

    order = get_order.sync(order_id=placed.order_id, client=customer)
    assert isinstance(order, models.Order), order
    assert order.order_id == placed.order_id
    assert order.status is models.OrderStatus.PLACED
    assert isinstance(order.payment, models.OrderPayment)
    assert order.payment.method is models.PaymentMethod.PAYPAL
    assert order.payment.status in set(models.PaymentStatus)
    assert order.cancel_reason is None
    assert [(line.product_id, line.quantity) for line in order.order_items] == [(product.product_id, 2)]

    page = list_orders.sync(client=customer, status=models.OrderStatus.PLACED)
    assert isinstance(page, models.OrderPage), page
    assert [o.order_id for o in page.items] == [placed.order_id]
