"""E-mail over SMTP, behind a circuit breaker whose state lives in Redis (shared by every worker).

``SMTP_URL`` forms: ``smtp://host:port`` (plain), ``smtp://host:port?starttls=true`` (STARTTLS),
``smtps://host:port`` (implicit TLS); ``user:password@`` in the URL logs in. Every connection has
a socket timeout, so a hung server costs one attempt, not a worker.
"""

from __future__ import annotations

import functools
import smtplib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pybreaker

from app.adapters.breakers import SharedCircuitBreaker
from app.domain.notifications import is_permanent_smtp_code
from app.log import get_logger

log = get_logger(__name__)

_TRUE = {"1", "true", "yes", "on"}


class MailerError(RuntimeError):
    """A message could not be handed to the SMTP server; the caller decides about retries."""


class MailerRejected(MailerError):
    """The server refused this message for good (SMTP 5xx, e.g. 550 unknown mailbox): no retry."""


class MailerUnavailable(MailerError):
    """The circuit is open: the server failed repeatedly, so no connection was even attempted."""


@dataclass(frozen=True)
class OutgoingEmail:
    message_id: str  # stable per notification, so a receiver can spot a duplicate
    recipient: str
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class SmtpEndpoint:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"SMTP_URL must look like smtp://host:port or smtps://host:port, got {url!r}")
        implicit_tls = parts.scheme == "smtps"
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit_tls else 25),
            implicit_tls=implicit_tls,
            starttls=not implicit_tls and query.get("starttls", "") in _TRUE,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def message_domain(mail_from: str) -> str:
    """The right-hand side of our Message-IDs: the sender's domain."""
    _, address = parseaddr(mail_from)
    return address.rpartition("@")[2] or "oms"


def build_message(email: OutgoingEmail, mail_from: str) -> EmailMessage:
    """A multipart/alternative message: plain text first, HTML as the preferred alternative."""
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = email.recipient
    message["Subject"] = email.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = f"<{email.message_id}@{message_domain(mail_from)}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


def _is_permanent_rejection(exc: BaseException) -> bool:
    """The server answered and refused this message (5xx): it is up, so the breaker ignores it."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return True
    return isinstance(exc, smtplib.SMTPResponseException) and 500 <= exc.smtp_code < 600


def rejection_codes(exc: BaseException) -> list[int]:
    """The SMTP reply codes an exception carries (several when recipients were refused)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return [int(code) for code, _ in exc.recipients.values()]
    if isinstance(exc, smtplib.SMTPResponseException):
        return [int(exc.smtp_code)]
    return []


def is_bounce(exc: BaseException) -> bool:
    """A permanent rejection (every reply code 5xx); 4xx and connection errors are transient."""
    codes = rejection_codes(exc)
    return bool(codes) and all(is_permanent_smtp_code(code) for code in codes)


SMTP_BREAKER = "smtp"
_breakers: dict[tuple[str, int, float], SharedCircuitBreaker] = {}
_breakers_lock = threading.Lock()


def smtp_breaker(redis_url: str, fail_max: int, reset_timeout: float) -> SharedCircuitBreaker:
    """The process's breaker for SMTP; its state and counters are shared through Redis (the same
    breaker as the payment gateway's, under its own name)."""
    key = (redis_url, fail_max, reset_timeout)
    with _breakers_lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = SharedCircuitBreaker(
                SMTP_BREAKER,
                redis_url,
                fail_max=fail_max,
                reset_timeout=reset_timeout,
                exclude=[_is_permanent_rejection],
            )
        return breaker


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: building one loads the CA bundle, which cost more
    CPU than the rest of a delivery (docs/bench/README.md, fix 6)."""
    return ssl.create_default_context()


class SmtpMailer:
    def __init__(
        self, endpoint: SmtpEndpoint, mail_from: str, timeout: float, breaker: SharedCircuitBreaker
    ) -> None:
        self.endpoint = endpoint
        self.mail_from = mail_from
        self.timeout = timeout
        self.breaker = breaker

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SmtpMailer:
        return cls(
            SmtpEndpoint.from_url(str(config["SMTP_URL"])),
            str(config["MAIL_FROM"]),
            float(config["SMTP_TIMEOUT_SECONDS"]),
            smtp_breaker(
                str(config["REDIS_URL"]),
                int(config["SMTP_BREAKER_FAIL_MAX"]),
                float(config["SMTP_BREAKER_RESET_SECONDS"]),
            ),
        )

    def send(self, email: OutgoingEmail) -> None:
        """Hand one message to the server; raises ``MailerError`` (``MailerUnavailable`` if open)."""
        message = build_message(email, self.mail_from)
        try:
            self.breaker.call(self._deliver, message, email.recipient)
        except pybreaker.CircuitBreakerError as exc:
            raise MailerUnavailable(f"SMTP circuit open: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            error = MailerRejected if is_bounce(exc) else MailerError
            raise error(f"{type(exc).__name__}: {exc}".strip()) from exc

    def _deliver(self, message: EmailMessage, recipient: str) -> None:
        """One SMTP session per message (TLS with the process's shared, verifying context)."""
        e = self.endpoint
        smtp: smtplib.SMTP
        if e.implicit_tls:
            smtp = smtplib.SMTP_SSL(e.host, e.port, timeout=self.timeout, context=_tls_context())
        else:
            smtp = smtplib.SMTP(e.host, e.port, timeout=self.timeout)
        with smtp:
            if e.starttls:
                smtp.starttls(context=_tls_context())
            if e.username:
                smtp.login(e.username, e.password or "")
            smtp.send_message(message, to_addrs=[recipient])
