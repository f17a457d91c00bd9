"""Changsha 举报申诉: complaints filed by students and parents, answered by the school's evaluation committee

Revision ID: 5c1f0a7e9b21
Revises: 2923898aa5ce
Create Date: 2026-11-24 15:40:00
"""
import sqlalchemy as sa
from alembic import op

from models.base import UTCDateTime

revision = '5c1f0a7e9b21'
down_revision = '2923898aa5ce'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'complaints',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('term_id', sa.Integer(), sa.ForeignKey('terms.id'), nullable=False),
        sa.Column('district_id', sa.Integer(), sa.ForeignKey('districts.id'), nullable=False),
        sa.Column('school_id', sa.Integer(), sa.ForeignKey('schools.id'), nullable=False),
        sa.Column('class_id', sa.Integer(), sa.ForeignKey('classes.id'), nullable=False),
        sa.Column('student_id', sa.Integer(), sa.ForeignKey('students.id'), nullable=False),
        sa.Column('filed_by_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=False),
        sa.Column('about', sa.String(length=16), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('handler_note', sa.Text(), nullable=False),
        sa.Column('handled_by_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=True),
        sa.Column('due_at', UTCDateTime(), nullable=False),
        sa.Column('closed_at', UTCDateTime(), nullable=True),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.CheckConstraint("state IN ('open', 'accepted', 'closed', 'dismissed')", name=op.f('ck_complaints_state_value')),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_complaints_district_id', 'complaints', ['district_id'])
    op.create_index('ix_complaints_student_id', 'complaints', ['student_id'])
    op.create_index('ix_complaints_school_state', 'complaints', ['school_id', 'state'])
    op.create_index('ix_complaints_filed_by_state', 'complaints', ['filed_by_id', 'state'])


def downgrade():
    op.drop_table('complaints')
