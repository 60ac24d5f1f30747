"""Queries over feature toggles."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.operations import Feature


class FeatureRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> list[Feature]:
        return list(self.session.scalars(select(Feature).order_by(Feature.name)))

    def get(self, name: str) -> Feature | None:
        return self.session.get(Feature, name)

    def lock(self, name: str) -> Feature | None:
        stmt = select(Feature).where(Feature.name == name).with_for_update()
        return self.session.scalars(stmt.execution_options(populate_existing=True)).first()

    def enabled_map(self) -> dict[str, tuple[bool, int]]:
        """Every toggle's (enabled, rollout percent), by name, in one query."""
        rows = self.session.execute(select(Feature.name, Feature.enabled, Feature.rollout_percent))
        return {name: (enabled, percent) for name, enabled, percent in rows.tuples()}
