"""sweeps: hyperparameter sweeps and their trials (each a child job)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 04:40:00

``sweeps`` holds a sweep's request (base spec, grid, method, trials, metric, goal,
seed) and its status; ``sweep_trials`` one row per child: its number, the values it
varies and its job's id (no foreign key to ``jobs``: a deleted child leaves its trial).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sweeps',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('grid', sa.JSON(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('trials', sa.Integer(), nullable=False),
    sa.Column('parallel', sa.Integer(), nullable=False),
    sa.Column('metric', sa.String(length=100), nullable=False),
    sa.Column('goal', sa.String(length=8), nullable=False),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.create_index('ix_sweeps_owner_created', ['owner', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_sweeps_status', ['status'], unique=False)

    op.create_table('sweep_trials',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('sweep_id', sa.String(length=32), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sweep_id'], ['sweeps.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sweep_id', 'number', name='uq_sweep_trials_number')
    )
    with op.batch_alter_table('sweep_trials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweep_trials_sweep_id'), ['sweep_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sweep_trials_job_id'), ['job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sweep_trials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sweep_trials_job_id'))
        batch_op.drop_index(batch_op.f('ix_sweep_trials_sweep_id'))

    op.drop_table('sweep_trials')
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.drop_index('ix_sweeps_status')
        batch_op.drop_index('ix_sweeps_owner_created')

    op.drop_table('sweeps')
