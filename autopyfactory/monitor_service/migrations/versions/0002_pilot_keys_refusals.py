"""Pilot keys and bounded refusals.

Jobs: the digest of their pilot's key, and a count of refused reports (only the last few stay as
job events). Factories: whether pilot reports must carry their pilot's key, and counts of the
reports refused for the lack of one or for a wrong one.

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("key_sha256", sa.String(64), nullable=False, server_default=""))
    op.add_column("jobs", sa.Column("refusals", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("refused_at", sa.DateTime(), nullable=True))
    op.add_column(
        "factories", sa.Column("require_pilot_keys", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "factories", sa.Column("refused_unsigned", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column(
        "factories", sa.Column("refused_bad_key", sa.BigInteger(), nullable=False, server_default="0")
    )
    op.add_column("factories", sa.Column("key_refused_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    for column in ("key_refused_at", "refused_bad_key", "refused_unsigned", "require_pilot_keys"):
        op.drop_column("factories", column)
    for column in ("refused_at", "refusals", "key_sha256"):
        op.drop_column("jobs", column)
