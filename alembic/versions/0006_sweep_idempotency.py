"""sweeps honour Idempotency-Key: the key and a digest of the request, unique per owner

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 07:40:00

``sweeps.idempotency_key`` is the ``Idempotency-Key`` header ``POST /v1/sweeps`` came
with (null without one) and ``sweeps.request_hash`` the sha256 of its request, as
``jobs.idempotency_key`` and ``jobs.spec_hash`` are for ``POST /v1/jobs``. Unique per
(owner, idempotency_key): of two concurrent requests with one key, one sweep is made.
Existing sweeps get nulls (no key: nothing to replay).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('request_hash', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            'uq_sweeps_owner_idempotency', ['owner', 'idempotency_key']
        )


def downgrade() -> None:
    with op.batch_alter_table('sweeps', schema=None) as batch_op:
        batch_op.drop_constraint('uq_sweeps_owner_idempotency', type_='unique')
        batch_op.drop_column('request_hash')
        batch_op.drop_column('idempotency_key')
