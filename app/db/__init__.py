"""The database layer: SQLAlchemy 2 models, engine and sessions; alembic/ migrates them."""
