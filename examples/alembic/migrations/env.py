"""Alembic environment: the database URL comes from the dbprofile profile."""

from logging.config import fileConfig

from alembic import context
from example_models import metadata

from dbprofile.migrations import run_migrations

if context.config.config_file_name is not None:
    # disable_existing_loggers=False keeps the application's own loggers (dbprofile.*).
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

run_migrations(context, metadata)
