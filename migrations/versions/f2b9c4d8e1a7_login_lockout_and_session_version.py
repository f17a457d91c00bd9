"""Login lock-out and session versions

Consecutive failed logins lock an account for a while (a homeroom teacher or school admin can unlock
students and parents at once); a session version in the session id ends old sessions on a password change.

Revision ID: f2b9c4d8e1a7
Revises: 86693e3545b5
Create Date: 2026-11-24 09:00:00
"""
import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision = "f2b9c4d8e1a7"
down_revision = "86693e3545b5"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("locked_until", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_version")
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")
