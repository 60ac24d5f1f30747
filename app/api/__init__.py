"""The HTTP edge: blueprints, schemas, security and the problem+json error mapping."""
