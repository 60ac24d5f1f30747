"""SPEC §5.7: GET /admin/notifications?status&event&userId&page&pageSize (admin), newest first."""

from __future__ import annotations

import uuid
from datetime import timedelta

from app.domain.base import utcnow
from app.domain.notifications import Notification
from app.extensions import db


def add(app, user, n, status, event):
    with app.app_context():
        db.session.add(
            Notification(
                id=uuid.uuid4(),
                user_id=user.id,
                event_id=1000 + n,
                event=event,
                recipient=user.email,
                subject="s",
                message="m",
                status=status,
                attempts=0,
                created_at=utcnow() + timedelta(seconds=n),
            )
        )
        db.session.commit()


def test_filters_and_newest_first(app, client, admin, customer, make_user, token_for):
    other = make_user()
    add(app, customer, 1, "FAILED", "OrderPlaced")
    add(app, customer, 2, "SENT", "OrderShipped")
    add(app, other, 3, "FAILED", "OrderShipped")
    get = lambda q: client.get(f"/admin/notifications{q}", headers=token_for(admin))  # noqa: E731
    body = get("").get_json()
    assert body["totalItems"] == 3 and [i["event"] for i in body["items"]] == [
        "OrderShipped",
        "OrderShipped",
        "OrderPlaced",
    ]
    assert get("?status=FAILED").get_json()["totalItems"] == 2
    assert get("?event=OrderShipped&status=FAILED").get_json()["totalItems"] == 1
    assert get(f"?userId={customer.id}").get_json()["totalItems"] == 2
    paged = get("?page=2&pageSize=2").get_json()
    assert (paged["page"], paged["pageSize"], paged["totalPages"], len(paged["items"])) == (2, 2, 2, 1)
    assert get("?status=LOST").status_code == 422
    assert get("?userId=nope").status_code == 422
    assert client.get("/admin/notifications", headers=token_for(customer)).status_code == 403
