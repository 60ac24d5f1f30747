"""The domain: entities, their rules and the events they record. Imports nothing of ours."""
