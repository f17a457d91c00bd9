"""Accounts created from the student register: must_change_password and a mobile number

An initial password (printed on an account slip) is one-time: the holder must replace it at first
login. Parents' mobile numbers (家长手机) come from the register.

Revision ID: e5f1a7c3b9d2
Revises: c4e8a1d2f3b5
Create Date: 2026-11-26 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "e5f1a7c3b9d2"
down_revision = "c4e8a1d2f3b5"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("mobile", sa.String(length=20), nullable=True))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("mobile")
        batch_op.drop_column("must_change_password")
