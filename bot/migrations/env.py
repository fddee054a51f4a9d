"""Alembic environment: migrations run on the connection ``bot.storage.migrate`` hands over.

There is no alembic.ini: the project's code (and ``hotline db upgrade``) calls Alembic with the
database of ``bot.settings`` so the same URL rules apply everywhere.
"""
from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
