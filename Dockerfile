# claiim services: gate, control handler, Chron, the OCSF feed, the auth service and the admin UI
# in one image.
#   docker build -t claiim .
#   docker run --rm -e CLAIIM_URL=nats://nats:4222 -e ... claiim claiim serve gate   # one service
#   docker run ... claiim                                                            # all services
# Settings and keys come from the environment only (CLAIIM_URL, CLAIIM_TOKEN_SECRET,
# CLAIIM_NATS_PASSWORDS, CLAIIM_GATE_KEY, CLAIIM_CONTROL_VERIFIERS, ...; README.md and
# docker-compose.yml say which service needs which); the image holds no secret.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Only what the package is built from: not .venv, .git or a local .claiim/ (which holds secrets).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY sdk ./sdk
RUN pip install . ./services && cd / && rm -rf /src

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/claiim \
        --shell /usr/sbin/nologin claiim
USER 10001:10001
WORKDIR /home/claiim

ENV CLAIIM_NAMESPACE=claiim

CMD ["claiim", "serve", "all"]
