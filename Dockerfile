# payfirst's server image: `make image`. Two stages: wheels are built with the compilers of
# the full image, the runtime is slim, runs as an unprivileged user and holds no compiler,
# no sources and no keys (give them at run time: PAYFIRST_RELAYER_KEY_FILE on a secret).
# The image runs against a PostgreSQL and a chain of yours (docker-compose.yml: PostgreSQL);
# it never starts an embedded database or a local dev chain.
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[server]"

FROM python:3.11.7-slim-bookworm
RUN useradd --system --create-home --uid 10001 payfirst
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "payfirst[server]" \
 && rm -rf /wheels
USER payfirst
WORKDIR /home/payfirst
ENV PAYFIRST_HOST=0.0.0.0 \
    PAYFIRST_PORT=4021 \
    PYTHONUNBUFFERED=1
EXPOSE 4021
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4021/health', timeout=2)"]
ENTRYPOINT ["payfirst"]
CMD ["api"]
