"""Alembic environment: always run online, on the connection handed over by :func:`upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from autopyfactory.monitor_service.models import Base


def run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run migrations through autopyfactory-monitor migrate, not the alembic command")
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
