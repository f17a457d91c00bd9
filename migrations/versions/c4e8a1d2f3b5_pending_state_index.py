"""The queues' state index holds only records still waiting for someone

Published records (confirmed, corrected, final) are most of a term; leaving them out of
ix_records_school_state means a deadline that confirms a million records adds nothing to it.

Revision ID: c4e8a1d2f3b5
Revises: bbd474931268
Create Date: 2026-11-24 03:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "c4e8a1d2f3b5"
down_revision = "bbd474931268"
branch_labels = None
depends_on = None

PENDING_SQL = "state IN ('draft', 'submitted', 'reviewed', 'entered', 'rejected', 'problem')"


def upgrade():
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_school_state")
    op.create_index("ix_records_school_state", "records", ["school_id", "state"], unique=False,
                    postgresql_where=sa.text(PENDING_SQL), sqlite_where=sa.text(PENDING_SQL))


def downgrade():
    op.drop_index("ix_records_school_state", table_name="records")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index("ix_records_school_state", ["school_id", "state"], unique=False)
