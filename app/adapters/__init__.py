"""Adapters to the outside world: the task queue, the outbox relay, the gateway, the mailer."""
