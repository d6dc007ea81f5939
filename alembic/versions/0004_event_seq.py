"""job events get per-job sequence numbers: the SSE id no longer reveals other owners' volume

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:45:00

``job_events.seq`` counts 1, 2, ... within each job and is unique per (job_id, seq);
``jobs.event_seq`` holds the last one handed out (``app.db.ops.add_event`` bumps it in
the transaction that writes the event). Existing events are numbered in the order of
their global id, which is the order they were streamed in, so a client that kept a
global Last-Event-ID sees the job's events again from the start rather than missing
any.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        'jobs', sa.Column('event_seq', sa.Integer(), server_default='0', nullable=False)
    )
    op.add_column('job_events', sa.Column('seq', sa.Integer(), nullable=True))
    # UPDATE ... FROM: PostgreSQL, and SQLite since 3.33
    op.execute(
        'UPDATE job_events SET seq = numbered.rn FROM ('
        ' SELECT id, ROW_NUMBER() OVER (PARTITION BY job_id ORDER BY id) AS rn FROM job_events'
        ') AS numbered WHERE job_events.id = numbered.id'
    )
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint('uq_job_events_job_seq', ['job_id', 'seq'])
    op.execute(
        'UPDATE jobs SET event_seq = COALESCE('
        '(SELECT MAX(seq) FROM job_events WHERE job_events.job_id = jobs.id), 0)'
    )


def downgrade() -> None:
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_job_events_job_seq', type_='unique')
        batch_op.drop_column('seq')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('event_seq')
