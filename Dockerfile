# One image for every service of the fleet; docker-compose.yml picks the service with `command`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and the fleet's packages (pinned in pyproject.toml). Only what the services need is
# copied (see .dockerignore): no tests, no load tests or harness, no virtualenv, no local Redis data.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY orchestrator ./orchestrator
COPY tooloo_cli ./tooloo_cli
RUN pip install . \
    && useradd --create-home --uid 10001 tooloo

USER tooloo

# Containers are reached over the compose network, so services listen on every interface; the
# runner refuses that without TOOLOO_API_TOKEN (shared/runner.py), which compose requires.
ENV TOOLOO_HOST=0.0.0.0

EXPOSE 3000 3001 3002 3004 3008 3123
CMD ["python", "-m", "services.web"]
