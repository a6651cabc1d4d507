# claiim services: gate, control handler and Chron in one image.
#   docker build -t claiim .
#   docker run --rm -e CLAIIM_URL=nats://nats:4222 -e CLAIIM_DATABASE_URL=postgresql://... \
#     -e CLAIIM_TOKEN_SECRET=... -e CLAIIM_ADMIN_TOKEN=... claiim            # all services
#   docker run ... claiim claiim serve gate                                  # one service
# Settings come from the environment only (CLAIIM_URL, CLAIIM_DATABASE_URL, CLAIIM_TOKEN_SECRET,
# CLAIIM_ADMIN_TOKEN, CLAIIM_NAMESPACE; see README.md); the image holds no secret.
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
RUN pip install . && cd / && rm -rf /src

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/claiim \
        --shell /usr/sbin/nologin claiim
USER 10001:10001
WORKDIR /home/claiim

ENV CLAIIM_NAMESPACE=claiim

CMD ["claiim", "serve", "all"]
