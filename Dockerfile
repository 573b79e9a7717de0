# Switchboard's production image: the web, worker and beat services of docker-compose.yml.
# Same code and settings as ./switchboard run; PostgreSQL and Redis come from DATABASE_URL/REDIS_URL.
FROM python:3.12-slim

# PYTHONPATH: the code runs from /app, not from site-packages, because settings find templates/ and
# static/ next to the contactcenter package, and only the checkout has them.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=contactcenter.settings \
    PYTHONPATH=/app \
    STATIC_ROOT=/app/staticfiles \
    MEDIA_ROOT=/app/media

WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin switchboard

# Dependencies first, in their own layer, so a code change does not reinstall them. With only
# pyproject.toml present, `pip install .` installs the dependencies and an empty shell of the project.
COPY pyproject.toml README.md ./
RUN pip install .

COPY . .
# Static files collected once at build time. Settings insist on these three variables; the values
# here are placeholders used only by this step and never reach a running container.
RUN DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
        SECRET_KEY=build-time-placeholder-not-a-real-secret-key \
        python manage.py collectstatic --noinput \
    && mkdir -p /app/media \
    && chown switchboard /app/media

USER switchboard
EXPOSE 8000

# The web service; docker-compose.yml gives worker and beat their own commands.
CMD ["sh", "-c", "python manage.py migrate --noinput && exec uvicorn contactcenter.asgi:application --host 0.0.0.0 --port 8000 --proxy-headers --lifespan off"]
