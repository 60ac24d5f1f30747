"""Pure rules of accounts: email, password policy, country codes, address schema, erasure."""

from __future__ import annotations

from datetime import UTC, datetime

import marshmallow as ma
import pytest

from app.api.users import AddressSchema, UserCreateSchema, UserUpdateSchema
from app.domain.countries import COUNTRY_CODES, is_country_code
from app.domain.users import (
    ERASED_NAME,
    InvalidEmail,
    User,
    normalise_email,
    password_problem,
)

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}


# ---- countries -------------------------------------------------------------------------------


def test_there_are_249_assigned_alpha_2_codes():
    assert len(COUNTRY_CODES) == 249
    assert all(len(code) == 2 and code.isascii() and code.isupper() for code in COUNTRY_CODES)


@pytest.mark.parametrize("code", ["US", "DE", "GB", "FR", "JP", "BR", "ZA", "AX", "SS", "CW"])
def test_assigned_codes_are_countries(code):
    assert is_country_code(code)


@pytest.mark.parametrize("code", ["us", "Us", "UK", "XX", "EU", "USA", "U", "", " US", None, 1])
def test_lower_case_reserved_and_unassigned_codes_are_not(code):
    assert not is_country_code(code)


# ---- email and password ----------------------------------------------------------------------


def test_email_domain_is_lower_cased_and_whitespace_trimmed():
    assert normalise_email("  Ada.Lovelace@Example.COM ") == "Ada.Lovelace@example.com"


@pytest.mark.parametrize(
    "email", ["plain", "a@b", "a@@b.com", "@example.com", "a b@example.com", "a@localhost"]
)
def test_malformed_emails_are_rejected(email):
    with pytest.raises(InvalidEmail):
        normalise_email(email)


def test_an_overlong_email_is_rejected():
    with pytest.raises(InvalidEmail):
        normalise_email("a" * 320 + "@example.com")


@pytest.mark.parametrize(
    "password, ok", [("1234567", False), ("12345678", True), ("x" * 256, True), ("x" * 257, False)]
)
def test_password_length_policy(password, ok):
    assert (password_problem(password) is None) is ok


# ---- account changes -------------------------------------------------------------------------


def _user() -> User:
    return User(
        name="Ada",
        email="ada@example.com",
        password_hash="$argon2id$x",
        address=dict(ADDRESS),
        token_version=3,
    )


def test_changing_the_password_revokes_earlier_tokens():
    user = _user()
    user.change_password("$argon2id$new")
    assert user.password_hash == "$argon2id$new"
    assert user.token_version == 4


def test_erasure_removes_personal_data_and_revokes_tokens():
    user = _user()
    now = datetime(2025, 1, 1, tzinfo=UTC)
    user.erase(now)
    assert (user.name, user.email, user.address, user.password_hash) == (ERASED_NAME, None, None, None)
    assert user.token_version == 4
    assert user.deleted_at == now
    assert not user.is_active


# ---- schemas ---------------------------------------------------------------------------------


def test_address_schema_accepts_an_optional_line2():
    assert AddressSchema().load({**ADDRESS, "line2": "Apt 4"})["line2"] == "Apt 4"
    assert "line2" not in AddressSchema().load(ADDRESS)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"country": "us"}, "country"),
        ({"country": "ZZ"}, "country"),
        ({"city": "  "}, "city"),
        ({"line1": ""}, "line1"),
        ({"postalCode": "1" * 21}, "postalCode"),
        ({"province": "X"}, "province"),
    ],
)
def test_address_schema_rejects(changes, field):
    with pytest.raises(ma.ValidationError) as error:
        AddressSchema().load({**ADDRESS, **changes})
    assert field in error.value.messages


def test_sign_up_schema_normalises_the_email():
    data = UserCreateSchema().load(
        {"name": "Ada", "email": "Ada@EXAMPLE.com", "password": "long-enough", "address": ADDRESS}
    )
    assert data["email"] == "Ada@example.com"


@pytest.mark.parametrize("field", ["role", "email", "userId", "tokenVersion", "deletedAt"])
def test_update_schema_rejects_fields_that_cannot_be_changed(field):
    with pytest.raises(ma.ValidationError) as error:
        UserUpdateSchema().load({field: "x"})
    assert field in error.value.messages


def test_update_schema_takes_any_subset():
    assert UserUpdateSchema().load({}) == {}
    assert UserUpdateSchema().load({"name": "New"}) == {"name": "New"}
