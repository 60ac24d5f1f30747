# One image for every Procfile process (release, web, worker, beat): `docker compose up` runs them.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=5000

# An unprivileged user runs the processes; the code stays owned by root and read-only to them.
RUN useradd --create-home --uid 10001 --user-group oms

WORKDIR /srv/oms
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
# `pip install .` alone runs every Procfile line (runtime dependencies are base dependencies).
RUN pip install .
# The processes run from this directory, as on Heroku: `flask --app app`, gunicorn and celery
# import the package from here, and the app finds migrations/ beside it.
COPY migrations ./migrations
COPY gunicorn.conf.py Procfile ./

USER oms
EXPOSE 5000
# The web process by default; docker-compose.yml gives each service its Procfile line.
CMD ["sh", "-c", "exec gunicorn 'app:create_app()' --config gunicorn.conf.py"]
