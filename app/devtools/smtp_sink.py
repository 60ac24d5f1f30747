"""A development SMTP server that accepts every message and prints it (no e-mail leaves the machine).

    python -m app.devtools.smtp_sink --host 127.0.0.1 --port 8025

Each message is printed as one block: envelope sender and recipients, Subject, Message-ID and the
plain-text body. It runs until SIGINT or SIGTERM. Tests use ``SmtpSink`` directly to collect
the messages in memory.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from types import FrameType
from typing import Any, TextIO

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class ReceivedEmail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"] or "")

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return str(part.get_content()) if part is not None else ""  # type: ignore[attr-defined]


@dataclass
class _Handler:
    on_message: Callable[[ReceivedEmail], None]
    received: list[ReceivedEmail] = field(default_factory=list)
    # Recipient address → the reply that refuses it (e.g. "550 5.1.1 No such mailbox").
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.refuse.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        received = ReceivedEmail(str(envelope.mail_from), list(envelope.rcpt_tos), message)
        self.received.append(received)
        self.on_message(received)
        return "250 Message accepted for delivery"


class SmtpSink:
    """An aiosmtpd server on a thread; ``received`` lists every message it accepted."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8025,
        on_message: Callable[[ReceivedEmail], None] | None = None,
        refuse: dict[str, str] | None = None,
    ) -> None:
        """``refuse`` maps recipient addresses to the SMTP reply that rejects them (bounce tests)."""
        self.host = host
        self.port = port
        self._handler = _Handler(on_message or (lambda _: None), refuse=dict(refuse or {}))
        self._controller: Controller | None = None

    @property
    def received(self) -> list[ReceivedEmail]:
        return self._handler.received

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> SmtpSink:
        self._controller = Controller(self._handler, hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def print_message(received: ReceivedEmail, stream: TextIO = sys.stdout) -> None:
    print("-" * 72, file=stream)
    print(f"From: {received.mail_from}", file=stream)
    print(f"To: {', '.join(received.rcpt_tos)}", file=stream)
    print(f"Subject: {received.subject}", file=stream)
    print(f"Message-ID: {received.message_id}", file=stream)
    print("", file=stream)
    print(received.body().rstrip(), file=stream)
    print("-" * 72, file=stream, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.devtools.smtp_sink", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with SmtpSink(args.host, args.port, on_message=print_message) as sink:
        print(f"SMTP sink listening on {sink.url}", flush=True)
        stop.wait()
    print("SMTP sink stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
