"""Settings, read once from the environment into a frozen object.

| variable              | default                  | meaning                                            |
|-----------------------|--------------------------|----------------------------------------------------|
| CLAIIM_URL            | nats://127.0.0.1:4222    | NATS server URL                                    |
| CLAIIM_DATABASE_URL   | (none)                   | PostgreSQL URL for Chron                           |
| CLAIIM_NAMESPACE      | claiim                   | prefix of every subject and stream                 |
| CLAIIM_TOKEN_SECRET   | (none, required)         | key of the token hashes (HMAC-SHA256)              |
| CLAIIM_ADMIN_TOKEN    | (none, required)         | bootstrap admin token for the admin and Chron APIs |
| CLAIIM_PUBLISH_TIMEOUT| 2.0 seconds              | how long the gate waits for a PubAck               |
| CLAIIM_CHRON_BATCH    | 256 messages             | Chron's pull batch size                            |
| CLAIIM_CHECKPOINT_KEY | (none)                   | Chron's signing key, PRIVATE+KEY+NAME+ID+BASE64    |
| CLAIIM_CHECKPOINT_KEY_FILE | (none)              | ... or a file holding it (one of the two required) |
| CLAIIM_CHECKPOINT_INTERVAL | 5.0 seconds         | longest time between checkpoints while leaves come |
| CLAIIM_CHECKPOINT_DIR | (none)                   | a folder to mirror checkpoints and leaf batches to |
| CLAIIM_CHRON_ORIGIN   | claiim/<namespace>       | the log's name in its checkpoints                  |
| CLAIIM_PROPOSAL_TTL   | 86400 seconds (24 h)     | how long a proposal waits for approvals (max 7 d)  |
"""

from __future__ import annotations

from pathlib import Path

from claiim_core.checkpoint import CheckpointError, Signer, Verifier
from claiim_core.names import Names
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLAIIM_", frozen=True, extra="ignore")

    url: str = "nats://127.0.0.1:4222"
    connect_wait: float = Field(default=30.0, gt=0)
    inbox_prefix: str = "_INBOX"
    database_url: str | None = None
    namespace: str = "claiim"
    token_secret: SecretStr | None = None
    admin_token: SecretStr | None = None
    publish_timeout: float = Field(default=2.0, gt=0)
    chron_batch: int = Field(default=256, ge=1, le=10_000)
    checkpoint_key: SecretStr | None = None
    checkpoint_key_file: Path | None = None
    checkpoint_interval: float = Field(default=5.0, gt=0, le=5.0)
    checkpoint_dir: Path | None = None
    chron_origin: str = ""
    proposal_ttl: float = Field(default=86_400.0, gt=0, le=7 * 86_400.0)
    checkpoint_verifier: str | None = None
    ui_host: str = "127.0.0.1"
    ui_port: int = Field(default=8480, ge=0, le=65_535)
    ui_secure_cookies: bool = False
    ui_session_idle: float = Field(default=1800.0, gt=0)

    @property
    def names(self) -> Names:
        return Names(self.namespace)

    def require_token_secret(self) -> bytes:
        if self.token_secret is None or not self.token_secret.get_secret_value():
            raise ConfigError(
                "CLAIIM_TOKEN_SECRET is not set; create one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return self.token_secret.get_secret_value().encode()

    def require_admin_token(self) -> str:
        if self.admin_token is None or not self.admin_token.get_secret_value():
            raise ConfigError("CLAIIM_ADMIN_TOKEN is not set (see `claiim up`'s DIR/env)")
        return self.admin_token.get_secret_value()

    @property
    def origin(self) -> str:
        return self.chron_origin or f"claiim/{self.namespace}"

    def require_checkpoint_signer(self) -> Signer:
        """The checkpoint signing key, from CLAIIM_CHECKPOINT_KEY or CLAIIM_CHECKPOINT_KEY_FILE."""
        text = self.checkpoint_key.get_secret_value() if self.checkpoint_key else ""
        if not text and self.checkpoint_key_file:
            try:
                text = self.checkpoint_key_file.read_text()
            except OSError as e:
                raise ConfigError(f"cannot read CLAIIM_CHECKPOINT_KEY_FILE: {e}") from e
        if not text.strip():
            raise ConfigError("CLAIIM_CHECKPOINT_KEY is not set (nor CLAIIM_CHECKPOINT_KEY_FILE); create a key with "
                              "`claiim chron keygen NAME -o FILE` and keep it out of PostgreSQL")
        try:
            return Signer.parse(text)
        except CheckpointError as e:
            raise ConfigError(f"the checkpoint key is not valid: {e}") from e

    def require_checkpoint_verifier(self) -> Verifier:
        """The verifier key of Chron's checkpoints (CLAIIM_CHECKPOINT_VERIFIER), for the admin UI."""
        if not self.checkpoint_verifier:
            raise ConfigError("CLAIIM_CHECKPOINT_VERIFIER is not set; it is the public key printed by "
                              "`claiim chron keygen` (claiim up writes it to DIR/checkpoint.pub)")
        try:
            return Verifier.parse(self.checkpoint_verifier)
        except CheckpointError as e:
            raise ConfigError(f"CLAIIM_CHECKPOINT_VERIFIER is not a verifier key: {e}") from e

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError("CLAIIM_DATABASE_URL is not set (postgresql://user@host/db)")
        return self.database_url


class ConfigError(RuntimeError):
    """The service cannot start with this configuration; the message says what to set."""
