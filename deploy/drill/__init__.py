"""The deployment drill (`make deploy-drill`): blue-green, canary and rolling updates behind HAProxy
and PgBouncer, under constant load, with every request's outcome recorded. See docs/deploy.md."""
