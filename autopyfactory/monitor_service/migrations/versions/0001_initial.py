"""Initial schema: factories, labels, label messages, jobs and their event log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "factories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("url", sa.String(512), nullable=False),
        sa.Column("email", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=True),
        sa.Column("last_ip", sa.String(64), nullable=False),
        sa.UniqueConstraint("name", name="uq_factories_name"),
        sa.UniqueConstraint("token_hash", name="uq_factories_token_hash"),
    )
    op.create_table(
        "labels",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "factory_id",
            sa.Integer(),
            sa.ForeignKey("factories.id", ondelete="CASCADE", name="fk_labels_factory_id_factories"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("batchqueue", sa.String(128), nullable=False),
        sa.Column("wmsqueue", sa.String(128), nullable=False),
        sa.Column("resource", sa.String(256), nullable=False),
        sa.Column("localqueue", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("last_message", sa.Text(), nullable=False),
        sa.Column("last_message_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("factory_id", "name", name="uq_labels_factory_id_name"),
    )
    op.create_index("ix_labels_batchqueue", "labels", ["batchqueue"])
    op.create_table(
        "label_messages",
        sa.Column("id", BigId, primary_key=True),
        sa.Column(
            "label_id",
            sa.Integer(),
            sa.ForeignKey("labels.id", ondelete="CASCADE", name="fk_label_messages_label_id_labels"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
    )
    op.create_index("ix_label_messages_label_id_id", "label_messages", ["label_id", "id"])
    op.create_table(
        "jobs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column(
            "factory_id",
            sa.Integer(),
            sa.ForeignKey("factories.id", ondelete="CASCADE", name="fk_jobs_factory_id_factories"),
            nullable=False,
        ),
        sa.Column(
            "label_id",
            sa.Integer(),
            sa.ForeignKey("labels.id", ondelete="CASCADE", name="fk_jobs_label_id_labels"),
            nullable=False,
        ),
        sa.Column("cid", sa.String(40), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("flagged_at", sa.DateTime(), nullable=True),
        sa.Column("rc", sa.Integer(), nullable=True),
        sa.Column("ids", sa.String(2048), nullable=False),
        sa.UniqueConstraint("factory_id", "cid", name="uq_jobs_factory_id_cid"),
    )
    op.create_index(
        "ix_jobs_label_id_state_state_changed_at", "jobs", ["label_id", "state", "state_changed_at"]
    )
    op.create_index("ix_jobs_label_id_created_at", "jobs", ["label_id", "created_at"])
    op.create_index("ix_jobs_state_state_changed_at", "jobs", ["state", "state_changed_at"])
    op.create_index("ix_jobs_created_at_label_id_state", "jobs", ["created_at", "label_id", "state"])
    op.create_index("ix_jobs_flagged_at", "jobs", ["flagged_at"])
    op.create_table(
        "job_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column(
            "job_id",
            BigId,
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_job_events_job_id_jobs"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("old_state", sa.String(8), nullable=True),
        sa.Column("new_state", sa.String(8), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("text", sa.String(512), nullable=False),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])


def downgrade() -> None:
    for table in ("job_events", "jobs", "label_messages", "labels", "factories"):
        op.drop_table(table)
