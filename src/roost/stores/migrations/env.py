"""Alembic environment of roost's schema.

roost runs the migrations itself when it opens the stores (``roost.stores.Database.migrate``
passes its connection in ``config.attributes["connection"]``). For development, the
Alembic CLI works too, against ``$ROOST_DATABASE_URL`` or the configured roost database::

    alembic -c src/roost/stores/migrations/alembic.ini revision --autogenerate -m "..."
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from roost.stores._schema import BACKEND_TABLE_PREFIX, Base

config = context.config
target_metadata = Base.metadata


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Leave tables a backend creates at run time (vector collections) alone."""
    return not (type_ == "table" and name is not None and name.startswith(BACKEND_TABLE_PREFIX))


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=include_name,
        # SQLite cannot ALTER most things: later migrations copy-and-move tables
        render_as_batch=connection.dialect.name == "sqlite",
        # roost's SQLite engine emits BEGIN itself, which makes SQLite DDL transactional
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def database_url() -> str:
    url = os.environ.get("ROOST_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from roost.config import load_settings

    return load_settings().database_url


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    from roost.stores._db import Database

    database = Database(database_url(), workers=1)
    try:
        with database.engine.execution_options(roost_write=True).connect() as connection:
            run_migrations(connection)
            connection.commit()
    finally:
        database.close_sync()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
