import logging
import time

from alembic import context
from flask import current_app

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
# Logging is configured by the app (JSON lines), not by alembic.ini.
logger = logging.getLogger("alembic.env")


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace("%", "%%")
    except AttributeError:
        return str(get_engine().url).replace("%", "%%")


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option("sqlalchemy.url", get_engine_url())
target_db = current_app.extensions["migrate"].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, "metadatas"):
        return target_db.metadatas[None]
    return target_db.metadata


def migration_timeouts():
    """Bound how long any migration waits for a lock or runs one statement.

    A migration queued behind a long transaction for an ACCESS EXCLUSIVE lock blocks every query
    queued behind it. While the old release serves we would rather fail the release phase (the
    deploy stops, the old release keeps serving; deploy again) than stall the site. The values are
    the app's DB_LOCK_TIMEOUT_MS and DB_STATEMENT_TIMEOUT_MS; a migration that needs longer (CREATE
    INDEX CONCURRENTLY on a big table) says so itself: ``op.execute("SET statement_timeout = 0")``.
    Emitted in offline mode too, so the SQL that squawk lints shows them (require-lock-timeout).
    """
    settings = current_app.config
    return [
        f"SET lock_timeout = '{int(settings['DB_LOCK_TIMEOUT_MS'])}ms'",
        f"SET statement_timeout = '{int(settings['DB_STATEMENT_TIMEOUT_MS'])}ms'",
    ]


# Each revision commits on its own (transaction_per_migration): its locks are held only while it
# runs, a failed release keeps the revisions before it (each one is backward compatible), and what
# runs is what `make lint-migrations` lints, revision by revision — e.g. an ADD CONSTRAINT … NOT
# VALID and its VALIDATE in two revisions of one release are two transactions, as they must be.
TRANSACTION_PER_MIGRATION = True
# Two release steps at once (a retried job, two deploys) take turns on this session lock: the
# second waits (up to a minute), then finds the schema at head and does nothing.
MIGRATION_LOCK = "hashtext('oms:migrations')"
MIGRATION_LOCK_WAIT_SECONDS = 120


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=get_metadata(),
        literal_binds=True,
        transaction_per_migration=TRANSACTION_PER_MIGRATION,
    )

    for statement in migration_timeouts():
        context.execute(statement)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = current_app.extensions["migrate"].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()

    with connectable.connect() as connection:
        _take_turn(connection)
        for statement in migration_timeouts():
            connection.exec_driver_sql(statement)
        connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=get_metadata(),
                transaction_per_migration=TRANSACTION_PER_MIGRATION,
                **conf_args,
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.rollback()  # whatever a failed revision left open
            connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
            connection.commit()


def _take_turn(connection):
    """Wait for the migration lock by polling pg_try_advisory_lock, never by blocking on it.

    A session blocked in pg_advisory_lock keeps a snapshot open, and CREATE INDEX CONCURRENTLY in the
    release that holds the lock waits for every older snapshot to end: the two would wait on each
    other until the lock wait timed out (two overlapping release steps failed that way). Each try
    here is a short transaction of its own, so the index build is never held up by the waiter.
    """
    deadline = time.monotonic() + MIGRATION_LOCK_WAIT_SECONDS
    while True:
        taken = connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({MIGRATION_LOCK})").scalar()
        connection.commit()
        if taken:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"another release step held the migration lock for over {MIGRATION_LOCK_WAIT_SECONDS} s"
            )
        time.sleep(0.25)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
