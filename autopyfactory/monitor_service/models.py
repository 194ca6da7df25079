"""The monitor's tables (SQLAlchemy 2 typed ORM). The schema itself is created and upgraded by
the Alembic migrations in ``migrations/``; a test checks that they match these models.

Indexes are chosen for the pages and aggregated queries of a database with millions of jobs:

- ``(label_id, state, state_changed_at)``: counts per state per label, jobs of a label by state;
- ``(label_id, created_at)``: a label's latest jobs and its activity per time bin;
- ``(state, state_changed_at)``: expiry and retention scans;
- ``(created_at, label_id, state)``: reports over an interval (faults per label), global activity;
- ``flagged_at``: flagged jobs waiting to become FAULT.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from autopyfactory.monitor_service.states import JobState

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only has 64-bit INTEGER primary keys when the type is exactly INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC as a naive timestamp (the same on SQLite and PostgreSQL); reads back aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Factory(Base):
    __tablename__ = "factories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(512), default="")
    email: Mapped[str] = mapped_column(String(256), default="")
    version: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_ip: Mapped[str] = mapped_column(String(64), default="")
    # Pilot keys (pilot_keys.py): whether reports must carry their pilot's key, and the reports
    # refused for the lack of one (unsigned, API v1 GET) or for a wrong one.
    require_pilot_keys: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    refused_unsigned: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    refused_bad_key: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    key_refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    labels: Mapped[list[Label]] = relationship(back_populates="factory")


class Label(Base):
    """One PanDA queue × one CE queue of one factory."""

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("factory_id", "name"),
        Index(None, "batchqueue"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    factory_id: Mapped[int] = mapped_column(ForeignKey("factories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    batchqueue: Mapped[str] = mapped_column(String(128), default="")  # the PanDA queue (PQ)
    wmsqueue: Mapped[str] = mapped_column(String(128), default="")  # PanDA siteid
    resource: Mapped[str] = mapped_column(String(256), default="")  # the CE
    localqueue: Mapped[str] = mapped_column(String(128), default="")  # the CE's batch queue
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_message: Mapped[str] = mapped_column(Text, default="")
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    factory: Mapped[Factory] = relationship(back_populates="labels")


class LabelMessage(Base):
    """A label's one-line cycle messages; only the last ``messages_kept`` per label are kept."""

    __tablename__ = "label_messages"
    __table_args__ = (Index(None, "label_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(64), default="")


class Job(Base):
    """One pilot: ``<factory>:<cid>``."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("factory_id", "cid"),
        Index(None, "label_id", "state", "state_changed_at"),
        Index(None, "label_id", "created_at"),
        Index(None, "state", "state_changed_at"),
        Index(None, "created_at", "label_id", "state"),
        Index(None, "flagged_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    factory_id: Mapped[int] = mapped_column(ForeignKey("factories.id", ondelete="CASCADE"))
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"))
    cid: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(8), default=JobState.CREATED.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rc: Mapped[int | None] = mapped_column(Integer)
    ids: Mapped[str] = mapped_column(String(2048), default="")  # PanDA job ids the pilot ran
    key_sha256: Mapped[str] = mapped_column(String(64), default="", server_default="")  # its pilot key's
    # Reports refused by the state machine (409): counted here; only the last few stay as events.
    refusals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobEvent(Base):
    """The job's timeline: every transition and flag, and the latest refused requests (the job's
    ``refusals`` counts them all), with time, source and text."""

    __tablename__ = "job_events"
    __table_args__ = (Index(None, "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    old_state: Mapped[str | None] = mapped_column(String(8))
    new_state: Mapped[str] = mapped_column(String(8))
    accepted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(64))  # client IP, or "expiry"
    text: Mapped[str] = mapped_column(String(512))
