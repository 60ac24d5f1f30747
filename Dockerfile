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
# The runtime dependencies exactly as uv.lock pins them (hashes checked), in their own layer: the
# lock, not the day of the build, decides every version. `--locked` fails on a stale lock.
COPY pyproject.toml uv.lock README.md ./
RUN pip install 'uv>=0.13,<0.14' \
 && uv export --locked --no-dev --no-emit-project --format requirements.txt --output-file /tmp/requirements.txt \
 && pip install --require-hashes --no-deps -r /tmp/requirements.txt \
 && pip uninstall --yes uv && rm /tmp/requirements.txt
COPY app ./app
COPY worker ./worker
# The project itself, on top of the locked dependencies (--no-deps: nothing newer slips in).
RUN pip install --no-deps .
# The processes run from this directory, as on Heroku: `flask --app app`, gunicorn and celery
# import the package from here, and the app finds migrations/ beside it.
COPY migrations ./migrations
COPY gunicorn.conf.py Procfile ./

USER oms
EXPOSE 5000
# The web process by default; docker-compose.yml gives each service its Procfile line.
CMD ["sh", "-c", "exec gunicorn 'app:create_app()' --config gunicorn.conf.py"]
