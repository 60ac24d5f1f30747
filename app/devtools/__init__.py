"""Development helpers: embedded Postgres and Redis for `make run` and `make test`."""
