"""Telling reporters what became of their case: an outbox table and pluggable senders.

Workflow steps only add rows to `case_outbox` inside their own transaction, so a message exists
exactly when the change it reports was committed. `deliver` sends pending rows later (the
`pujiang cases notify` command, run periodically) through one sender per channel; a failed send
stays pending with its error and is retried up to MAX_ATTEMPTS times.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from pujiang.cases.models import Case, CaseMessage
from pujiang.cases.workflow import STATE_TITLES, State
from pujiang.platform.db import utcnow

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Outgoing:
    id: int
    channel: str
    recipient: str
    subject: str
    body: str


class Sender(Protocol):
    def send(self, message: Outgoing) -> None:
        """Deliver one message or raise."""


@dataclass
class SmtpSender:
    """E-mail through an SMTP server (STARTTLS when `starttls`, login when a user is given)."""

    host: str
    port: int = 25
    sender: str = "noreply@pujiang.local"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0

    def send(self, message: Outgoing) -> None:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = message.recipient
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        mail.set_content(message.body)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(mail)


@dataclass
class MemorySender:
    """Keeps what it was given; for tests and for channels without a gateway yet."""

    sent: list[Outgoing]

    def send(self, message: Outgoing) -> None:
        self.sent.append(message)


def _recipients(case: Case) -> list[tuple[str, str]]:
    found = []
    if case.reporter_email:
        found.append(("email", case.reporter_email))
    if case.reporter_phone:
        found.append(("sms", case.reporter_phone))
    return found


def enqueue(session: Session, case: Case, state: State, note: str = "") -> int:
    """Queue a status message for the case's reporter and for reporters of merged duplicates."""
    reporters = [(case, r) for r in _recipients(case)]
    merged = session.scalars(select(Case).where(Case.duplicate_of_id == case.id))
    reporters += [(other, r) for other in merged for r in _recipients(other)]
    zh, en = STATE_TITLES[state]
    count = 0
    seen: set[tuple[str, str]] = set()
    for own, (channel, recipient) in reporters:
        if (channel, recipient) in seen:
            continue
        seen.add((channel, recipient))
        subject = (
            f"[浦江] 您反映的问题 {own.tracking_id}：{zh} / Your report {own.tracking_id}: {en}"
        )
        body = (
            f"您反映的问题（编号 {own.tracking_id}）当前状态：{zh}。{note}\n"
            f"Your report {own.tracking_id} is now: {en}.\n"
        )
        if own.id != case.id:
            body += (
                f"该问题已与案件 {case.tracking_id} 合并处理。\n"
                f"It is handled together with case {case.tracking_id}.\n"
            )
        session.add(
            CaseMessage(
                case_id=own.id, channel=channel, recipient=recipient, subject=subject, body=body
            )
        )
        count += 1
    return count


def deliver(
    session: Session, senders: Mapping[str, Sender], *, limit: int = 500
) -> tuple[int, int]:
    """Send pending messages of the channels we have senders for; returns (sent, failed)."""
    rows = session.scalars(
        select(CaseMessage)
        .where(
            CaseMessage.sent_at.is_(None),
            CaseMessage.attempts < MAX_ATTEMPTS,
            CaseMessage.channel.in_(list(senders)),
        )
        .order_by(CaseMessage.id)
        .limit(limit)
    ).all()
    sent = failed = 0
    for row in rows:
        row.attempts += 1
        try:
            senders[row.channel].send(
                Outgoing(row.id, row.channel, row.recipient, row.subject, row.body)
            )
        except (OSError, smtplib.SMTPException) as exc:
            row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            failed += 1
            continue
        row.sent_at = utcnow()
        row.last_error = ""
        sent += 1
    return sent, failed
