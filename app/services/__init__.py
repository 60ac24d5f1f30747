"""Use cases: they take ids and values, run in one unit of work and return domain objects."""
