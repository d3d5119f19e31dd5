"""users.session_version: cookie sessions carry it and die when it is bumped (logout, password change, revoke)

Revision ID: 0002_session_version
Revises: 0001
Create Date: 2026-12-05 13:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_session_version'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('session_version')
