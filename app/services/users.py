"""Account use cases: sign up, log in, view, update and delete an account; create an admin."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.adapters.passwords import hash_password, needs_rehash, verify_password
from app.domain.accounts import (
    EMAIL_VERIFICATION_TTL,
    PURPOSE_PASSWORD_RESET,
    PURPOSE_VERIFY_EMAIL,
    new_account_token,
    token_digest,
)
from app.domain.actors import Actor
from app.domain.audit import AuditAction, AuditResource, diff
from app.domain.base import new_id, utcnow
from app.domain.errors import (
    DuplicateEmail,
    Forbidden,
    InvalidToken,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from app.domain.events import EmailVerificationRequested, PasswordResetRequested
from app.domain.users import (
    ERASED_NAME,
    ROLE_ADMIN,
    ROLE_CUSTOMER,
    InvalidEmail,
    User,
    normalise_email,
    password_problem,
)
from app.repositories.users import UserRepository, token_state_of
from app.services.unit_of_work import ReadOnlyUnitOfWork, UnitOfWork, autocommit_connection

# uq_users_email_key is the rule; uq_users_email_lower stays for the previous release (migration 0002).
EMAIL_UNIQUE_INDEXES = frozenset({"uq_users_email_key", "uq_users_email_lower"})
UPDATABLE_FIELDS = frozenset({"name", "address", "password", "role"})


def _is_duplicate_email(exc: IntegrityError) -> bool:
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None) in EMAIL_UNIQUE_INDEXES


def _duplicate(email: str) -> DuplicateEmail:
    return DuplicateEmail(f"An account with the email {email!r} already exists")


def _checked_email(email: str) -> str:
    try:
        return normalise_email(email)
    except InvalidEmail as exc:
        raise ValidationFailed("The email is not valid", {"email": [str(exc)]}) from exc


def _checked_password(password: str) -> str:
    problem = password_problem(password)
    if problem:
        raise ValidationFailed("The password is not acceptable", {"password": [problem]})
    return password


def register_user(
    name: str,
    email: str,
    password: str,
    address: Mapping[str, Any] | None,
    *,
    secret_key: str | None = None,
) -> User:
    """Create a customer account; a taken email (case-insensitively) is ``DuplicateEmail``.

    With ``secret_key`` (the API), a verification token is issued in the same transaction and its
    e-mail queued (the secret is derived at delivery, as for a password reset).
    """
    email = _checked_email(email)
    # Hashing is slow on purpose: do it before the transaction opens.
    password_hash = hash_password(_checked_password(password))
    with UnitOfWork() as uow:
        user = User(
            id=new_id(),
            name=name,
            email=email,
            password_hash=password_hash,
            address=dict(address) if address is not None else None,
            role=ROLE_CUSTOMER,
            token_version=1,
        )
        try:
            # The unique index decides, so two concurrent sign-ups cannot both win.
            uow.users.add(user)
        except IntegrityError as exc:
            if _is_duplicate_email(exc):
                raise _duplicate(email) from exc
            raise
        if secret_key:
            token, _secret = new_account_token(
                user.id, PURPOSE_VERIFY_EMAIL, secret_key, EMAIL_VERIFICATION_TTL, utcnow()
            )
            uow.account_tokens.add(token)
            uow.record(
                EmailVerificationRequested(
                    user_id=str(user.id),
                    token_id=str(token.id),
                    ttl_seconds=int(EMAIL_VERIFICATION_TTL.total_seconds()),
                )
            )
        uow.commit()
    return user


def verify_email(secret: str) -> None:
    """Confirm an address with its e-mailed token (single use, consumed atomically).

    An unknown, used or expired token (or an erased account) is ``InvalidToken``.
    """
    with UnitOfWork() as uow:
        user_id = uow.account_tokens.consume(token_digest(secret), PURPOSE_VERIFY_EMAIL)
        user = uow.users.lock_active(user_id) if user_id is not None else None
        if user is None:
            raise InvalidToken("The token is unknown, used or expired")
        if user.email_verified_at is None:
            user.email_verified_at = utcnow()
        uow.commit()


def authenticate(email: str, password: str) -> User:
    """The account these credentials open; ``Unauthorized`` alike for unknown email and wrong password."""
    with ReadOnlyUnitOfWork() as uow:
        user = uow.users.by_email(email.strip())
        if user is not None:
            uow.detach(user)  # loaded: it outlives this short read
        uow.close()
    # Verified with no transaction open: argon2 is slow on purpose and must not hold a connection.
    # With no user, verify_password checks against a dummy hash, so the time taken does not
    # reveal whether the email is registered.
    valid = verify_password(user.password_hash if user is not None else None, password)
    if user is None or not valid or not user.is_active:
        raise Unauthorized("The email or password is incorrect")
    if user.password_hash and needs_rehash(user.password_hash):
        _upgrade_hash(user.id, user.password_hash, hash_password(password))
    return user


def _upgrade_hash(user_id: uuid.UUID, verified_hash: str, password_hash: str) -> None:
    """Store a hash made with today's parameters (same password: tokens stay valid), unless the
    password changed since it was verified."""
    with UnitOfWork() as uow:
        stored = uow.users.lock_active(user_id)
        if stored is not None and stored.password_hash == verified_hash:
            stored.password_hash = password_hash
            uow.commit()


def _visible_user(repo: UserRepository, actor: Actor, user_id: uuid.UUID, *, lock: bool) -> User:
    if not actor.may_access(user_id):
        raise NotFound("The user was not found")
    user = repo.lock_active(user_id) if lock else repo.get_active(user_id)
    if user is None:
        raise NotFound("The user was not found")
    return user


def get_user(actor: Actor, user_id: uuid.UUID) -> User:
    """A live account, for its owner or an admin."""
    with ReadOnlyUnitOfWork() as uow:
        return _visible_user(uow.users, actor, user_id, lock=False)


def _verified_current_password(actor: Actor, user_id: uuid.UUID, current_password: str | None) -> str:
    """Changing one's own password takes the current one (a stolen token alone cannot take the
    account over); returns the hash it was verified against."""
    if not current_password:
        raise ValidationFailed(
            "Your current password is required to set a new one",
            {"currentPassword": ["Required to change your own password."]},
        )
    with ReadOnlyUnitOfWork() as uow:
        password_hash = _visible_user(uow.users, actor, user_id, lock=False).password_hash
        uow.close()  # no connection is held while argon2 runs
    if not verify_password(password_hash, current_password):
        raise Forbidden("The current password is incorrect")
    return str(password_hash)


def update_user(
    actor: Actor, user_id: uuid.UUID, changes: Mapping[str, Any], current_password: str | None = None
) -> User:
    """Change name, address, password and/or (admins only) role; a new password revokes every
    earlier token. The last live admin cannot become a customer (``LastAdmin``).

    One's own new password needs ``current_password``; an admin resetting another account's does not.
    """
    unknown = set(changes) - UPDATABLE_FIELDS
    if "role" in changes and not actor.is_staff:
        unknown.add("role")  # only an admin sets roles: to anyone else the field does not exist (§3)
    if unknown:
        raise ValidationFailed(
            "These fields cannot be changed", {name: ["Unknown field."] for name in sorted(unknown)}
        )
    new_hash = verified_hash = None
    if changes.get("password") is not None:
        password = _checked_password(changes["password"])
        if actor.user_id == user_id:
            verified_hash = _verified_current_password(actor, user_id, current_password)
        new_hash = hash_password(password)
    elif current_password is not None:
        raise ValidationFailed(
            "currentPassword goes with a new password",
            {"currentPassword": ["Only with password."]},
        )
    with UnitOfWork() as uow:
        # A role change locks the admin rows first (see lock_live_admins), then the account.
        admins = uow.users.lock_live_admins() if "role" in changes else set()
        user = _visible_user(uow.users, actor, user_id, lock=True)
        if verified_hash is not None and user.password_hash != verified_hash:
            # Changed since it was verified (no transaction is held while argon2 runs).
            raise Forbidden("The current password is incorrect")
        if "name" in changes:
            user.name = changes["name"]
        if "address" in changes:
            user.address = dict(changes["address"]) if changes["address"] is not None else None
        if new_hash is not None:
            user.change_password(new_hash)
        if "role" in changes:
            old_role = user.role
            if user.change_role(changes["role"], other_live_admins=len(admins - {user.id})):
                uow.audit(
                    actor,
                    AuditAction.USER_ROLE_CHANGED,
                    AuditResource.USER,
                    user.id,
                    diff({"role": old_role}, {"role": user.role}),
                )
        uow.commit()
    return user


def list_users(
    actor: Actor, *, q: str | None, role: str | None, page: int, page_size: int
) -> tuple[list[User], int]:
    """Admin: live accounts whose name or e-mail contains ``q``, by role, newest first."""
    actor.require_staff()
    with ReadOnlyUnitOfWork() as uow:
        return uow.users.page(q=q, role=role, page=page, page_size=page_size)


def delete_user(actor: Actor, user_id: uuid.UUID) -> None:
    """Erase the account's personal data, disable its login and tokens and empty its cart.

    Orders and payments keep referring to the (anonymised) row, for the books.
    """
    with UnitOfWork() as uow:
        user = _visible_user(uow.users, actor, user_id, lock=True)
        name = user.name
        was_erased = user.deleted_at is not None
        user.erase(utcnow())
        uow.users.empty_cart(user.id)
        # Their address and name leave the notifications too; unsent ones can never be sent now.
        uow.notifications.scrub_user(user.id, name or "", ERASED_NAME)
        if not was_erased:
            # No personal data in the entry: it would outlive the erasure it records.
            uow.audit(
                actor,
                AuditAction.USER_ERASED,
                AuditResource.USER,
                user.id,
                diff({"erasedAt": None}, {"erasedAt": user.deleted_at}),
            )
        uow.commit()


def create_admin(email: str, password: str, name: str = "Administrator") -> tuple[User, bool]:
    """Create an admin account, or promote the account with this email (and set its password).

    Returns the user and whether it was created. Used by ``flask create-admin``.
    """
    email = _checked_email(email)
    password_hash = hash_password(_checked_password(password))
    with UnitOfWork() as uow:
        repo = uow.users
        user = repo.by_email(email, lock=True)
        created = user is None
        if user is None:
            user = User(
                id=new_id(),
                name=name,
                email=email,
                password_hash=password_hash,
                role=ROLE_ADMIN,
                token_version=1,
            )
            try:
                repo.add(user)
            except IntegrityError as exc:  # created concurrently: run the command again
                if _is_duplicate_email(exc):
                    raise _duplicate(email) from exc
                raise
        else:
            user.role = ROLE_ADMIN
            user.change_password(password_hash)
        uow.commit()
    return user, created


def request_password_reset(email: str, *, secret_key: str, ttl_seconds: int) -> None:
    """Issue a single-use reset token for a live account and queue its e-mail; for any other
    address do the same work (sign and hash a token, one indexed read of ``account_tokens``) and
    nothing else, so neither the answer nor its time tells whether the address is registered.

    Only the token's digest is stored; the secret goes out in the e-mail built at delivery.
    """
    now = utcnow()
    with UnitOfWork() as uow:
        user = uow.users.by_email(email.strip())
        live = user is not None and user.is_active and user.email is not None
        token, _secret = new_account_token(
            user.id if user is not None and live else new_id(),
            PURPOSE_PASSWORD_RESET,
            secret_key,
            timedelta(seconds=ttl_seconds),
            now,
        )
        if user is None or not live:
            uow.account_tokens.exists(token.token_hash)
            return  # rolled back: nothing written
        uow.account_tokens.add(token)
        uow.record(
            PasswordResetRequested(user_id=str(user.id), token_id=str(token.id), ttl_seconds=ttl_seconds)
        )
        uow.commit()


def confirm_password_reset(secret: str, password: str) -> None:
    """Set a new password with an e-mailed token: the token is consumed atomically (of two
    concurrent confirmations one wins), and every earlier access token is revoked.

    An unknown, used or expired token (or an erased account) is ``InvalidToken``.
    """
    # Hashing is slow on purpose: before the transaction opens.
    new_hash = hash_password(_checked_password(password))
    with UnitOfWork() as uow:
        user_id = uow.account_tokens.consume(token_digest(secret), PURPOSE_PASSWORD_RESET)
        user = uow.users.lock_active(user_id) if user_id is not None else None
        if user is None:
            raise InvalidToken("The token is unknown, used or expired")
        user.change_password(new_hash)
        uow.commit()


def logout(actor: Actor) -> None:
    """Revoke every access token of the caller (all devices): the token version is bumped."""
    if actor.user_id is None:
        raise Unauthorized("No account to log out")
    with UnitOfWork() as uow:
        user = uow.users.lock_active(actor.user_id)
        if user is None:
            raise Unauthorized("The account no longer exists")
        user.revoke_tokens()
        uow.commit()


def token_holder_role(user_id: uuid.UUID, token_version: object) -> str | None:
    """The role of the user an access token speaks for, as the database has it now (a demotion
    takes effect at the next request); None when the token is no longer good: no such user, the
    account deleted, or earlier tokens revoked since (password change). One statement, on a
    connection of its own in autocommit mode (the view's own transaction starts afresh)."""
    with autocommit_connection() as connection:
        state = token_state_of(connection, user_id)
    if state is None or state.deleted or state.token_version != token_version:
        return None
    return state.role
