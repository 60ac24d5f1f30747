"""Who is acting: a customer, an admin, or the system (worker, beat, CLI)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.domain.errors import Forbidden
from app.domain.users import ROLE_ADMIN


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID | None
    role: str
    request_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ROLE_ADMIN

    @property
    def is_system(self) -> bool:
        return self.role == "system"

    @property
    def is_staff(self) -> bool:
        """An admin or the system: may act on any user's resources and run the admin operations."""
        return self.is_admin or self.is_system

    def may_access(self, owner_id: uuid.UUID) -> bool:
        """Customers see their own resources; admins and the system see all."""
        return self.is_staff or owner_id == self.user_id

    def require_staff(self) -> None:
        """``Forbidden`` unless an admin or the system is acting."""
        if not self.is_staff:
            raise Forbidden("This operation is reserved to administrators")

    @property
    def label(self) -> str:
        """How the actor appears in audit trails (order history)."""
        if self.is_system:
            return "system"
        return f"{self.role}:{self.user_id}"


SYSTEM = Actor(user_id=None, role="system")
