# datafold-notifier image. Build from the repository root:
#   docker build -t datafold-notifier:latest .
# Run: see deploy/compose.yaml, deploy/kubernetes/ and "Running in production" in README.md.

FROM python:3.12-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY notifier ./notifier
RUN /opt/venv/bin/pip install --no-cache-dir .


FROM python:3.12-slim

# A fixed, unprivileged UID/GID, so volume ownership and Kubernetes runAsUser/fsGroup agree.
RUN groupadd --system --gid 10001 notifier \
    && useradd --system --no-log-init --uid 10001 --gid notifier \
       --home-dir /var/lib/datafold-notifier --no-create-home --shell /usr/sbin/nologin notifier \
    && mkdir -p /var/lib/datafold-notifier \
    && chown notifier:notifier /var/lib/datafold-notifier \
    && chmod 0700 /var/lib/datafold-notifier

COPY --from=builder /opt/venv /opt/venv

# The state file, its .lock and the temp files of each atomic save all live in the volume. The
# working directory is the volume too, so a relative NOTIFIER_STATE_FILE from an env file lands
# there rather than in the (possibly read-only) root filesystem.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOTIFIER_STATE_FILE=/var/lib/datafold-notifier/state.json \
    NOTIFIER_HEALTH_PORT=8080 \
    NOTIFIER_HEALTH_HOST=0.0.0.0 \
    NOTIFIER_LOG_FORMAT=json

WORKDIR /var/lib/datafold-notifier
VOLUME /var/lib/datafold-notifier
USER 10001:10001
EXPOSE 8080

# /healthz answers 200 while polling works (and while starting), 503 with a reason otherwise.
# urlopen raises on 503 or a refused connection, so the check exits non-zero. No curl in slim.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('NOTIFIER_HEALTH_PORT', '8080') + '/healthz', timeout=4)"]

# `run` drains in-flight work within NOTIFIER_SHUTDOWN_GRACE_SECONDS (default 10) on SIGTERM:
# give `docker stop` more than that (compose.yaml sets stop_grace_period: 30s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["datafold-notifier"]
CMD ["run"]
