"""Alembic environment: runs against the connection handed in by core.db.session.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from core.db.models import Base

config = context.config
target_metadata = Base.metadata

connection = config.attributes.get("connection")
if connection is None:
    # Command-line use (alembic revision --autogenerate): the URL comes from -x url=...
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///./data/yuqing.sqlite")
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
