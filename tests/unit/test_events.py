from app.domain.events import Event, OrderCancelled, OrderPlaced


def test_events_round_trip_through_their_payload():
    event = OrderPlaced(order_id="o1", user_id="u1", payment_id="p1")
    rebuilt = Event.from_payload(event.name, event.to_payload())
    assert rebuilt == event
    assert rebuilt.name == "OrderPlaced"


def test_unknown_payload_members_are_ignored_for_forward_compatibility():
    rebuilt = Event.from_payload("OrderCancelled", {"order_id": "o", "user_id": "u", "reason": "X", "new": 1})
    assert rebuilt == OrderCancelled(order_id="o", user_id="u", reason="X")
