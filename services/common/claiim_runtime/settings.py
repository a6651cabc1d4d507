"""Settings, read once from the environment into a frozen object.

| variable              | default                  | meaning                                            |
|-----------------------|--------------------------|----------------------------------------------------|
| CLAIIM_URL            | nats://127.0.0.1:4222    | NATS server URL(s), comma-separated for a cluster  |
| CLAIIM_STREAM_REPLICAS| 1                        | copies of every stream (3 on a 3-node cluster)     |
| CLAIIM_DATABASE_URL   | (none)                   | PostgreSQL URL for Chron                           |
| CLAIIM_NAMESPACE      | claiim                   | prefix of every subject and stream                 |
| CLAIIM_TOKEN_SECRET   | (none, required)         | key of the token hashes (HMAC-SHA256)              |
| CLAIIM_ADMIN_TOKEN    | (none, required)         | bootstrap admin token for the admin and Chron APIs |
| CLAIIM_PUBLISH_TIMEOUT| 2.0 seconds              | how long the gate waits for a PubAck               |
| CLAIIM_CHRON_BATCH    | 1000 messages            | Chron's and the OCSF feed's batch size             |
| CLAIIM_CHECKPOINT_KEY | (none)                   | Chron's signing key, PRIVATE+KEY+NAME+ID+BASE64    |
| CLAIIM_CHECKPOINT_KEY_FILE | (none)              | ... or a file holding it (one of the two required) |
| CLAIIM_CHECKPOINT_INTERVAL | 5.0 seconds         | longest time between checkpoints while leaves come |
| CLAIIM_CHECKPOINT_DIR | (none)                   | a folder to mirror checkpoints and leaf batches to |
| CLAIIM_CHRON_ORIGIN   | claiim/<namespace>       | the log's name in its checkpoints                  |
| CLAIIM_PROPOSAL_TTL   | 86400 seconds (24 h)     | how long a proposal waits for approvals (max 7 d)  |
| CLAIIM_CONTROL_KEY(_FILE) | (none)               | the control service's signing key (note key)       |
| CLAIIM_CONTROL_VERIFIERS(_FILE) | (none)         | the control verifier keys every service trusts     |
| CLAIIM_GATE_KEY(_FILE) | (none)                  | the gate's MAC key, GATEKEY+ID+BASE64              |
| CLAIIM_GATE_KEYS(_FILE) | (none)                 | the gate keys Chron and the OCSF feed accept       |
| CLAIIM_NATS_PASSWORDS | (none)                   | service=password,... : each service's NATS user    |
| CLAIIM_NATS_ISSUER_SEED(_FILE) | (none)          | the auth service's NATS account seed (SA...)       |

Keyrings (``*_VERIFIERS``, ``*_KEYS``) hold one key per line or comma-separated entry, each
optionally followed by ``revoked-after N`` (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from claiim_core.checkpoint import CheckpointError, Signer, Verifier
from claiim_core.eventauth import ControlKeyring, GateKey, GateKeyring, KeyFormatError
from claiim_core.names import Names
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLAIIM_", frozen=True, extra="ignore")

    url: str = "nats://127.0.0.1:4222"
    stream_replicas: int = Field(default=1, ge=1, le=5)
    connect_wait: float = Field(default=30.0, gt=0)
    database_url: str | None = None
    namespace: str = "claiim"
    token_secret: SecretStr | None = None
    admin_token: SecretStr | None = None
    publish_timeout: float = Field(default=2.0, gt=0)
    chron_batch: int = Field(default=1000, ge=1, le=10_000)
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
    control_key: SecretStr | None = None
    control_key_file: Path | None = None
    control_verifiers: str = ""
    control_verifiers_file: Path | None = None
    gate_key: SecretStr | None = None
    gate_key_file: Path | None = None
    gate_keys: SecretStr | None = None
    gate_keys_file: Path | None = None
    nats_passwords: SecretStr | None = None
    nats_issuer_seed: SecretStr | None = None
    nats_issuer_seed_file: Path | None = None

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
        return _load("CHECKPOINT_KEY", self.checkpoint_key, self.checkpoint_key_file, Signer.parse,
                     "create a key with `claiim keygen checkpoint NAME -o FILE` and keep it out of PostgreSQL")

    def require_checkpoint_verifier(self) -> Verifier:
        """The verifier key of Chron's checkpoints (CLAIIM_CHECKPOINT_VERIFIER), for the admin UI."""
        value = SecretStr(self.checkpoint_verifier) if self.checkpoint_verifier else None
        return _load("CHECKPOINT_VERIFIER", value, None, Verifier.parse,
                     "it is the public key printed by `claiim keygen checkpoint` (claiim up writes it to "
                     "DIR/checkpoint.pub)", file_setting=False)

    def require_control_signer(self) -> Signer:
        """The control service's signing key for control events (CLAIIM_CONTROL_KEY or _FILE)."""
        return _load("CONTROL_KEY", self.control_key, self.control_key_file, Signer.parse,
                     "create one with `claiim keygen control NAME -o FILE`")

    def require_control_keyring(self) -> ControlKeyring:
        """The control verifier keys (CLAIIM_CONTROL_VERIFIERS or _FILE): control events signed by
        anything else are never applied or stored."""
        value = SecretStr(self.control_verifiers) if self.control_verifiers else None
        return _load("CONTROL_VERIFIERS", value, self.control_verifiers_file, _nonempty(ControlKeyring.parse),
                     "list the verifier key(s) printed by `claiim keygen control`")

    def require_gate_key(self) -> GateKey:
        """This gate's MAC key for decision events (CLAIIM_GATE_KEY or _FILE)."""
        return _load("GATE_KEY", self.gate_key, self.gate_key_file, GateKey.parse,
                     "create one with `claiim keygen gate ID -o FILE` and add it to Chron's CLAIIM_GATE_KEYS")

    def require_gate_keyring(self) -> GateKeyring:
        """The gate keys whose decisions Chron and the OCSF feed accept (CLAIIM_GATE_KEYS or _FILE)."""
        return _load("GATE_KEYS", self.gate_keys, self.gate_keys_file, _nonempty(GateKeyring.parse),
                     "list every gate's key (`claiim keygen gate ID`)")

    def nats_password(self, user: str) -> str | None:
        """The NATS password of service ``user`` from CLAIIM_NATS_PASSWORDS (``user=password,...``)."""
        if self.nats_passwords is None:
            return None
        for entry in self.nats_passwords.get_secret_value().split(","):
            name, sep, password = entry.strip().partition("=")
            if not sep:
                raise ConfigError("CLAIIM_NATS_PASSWORDS is a list of service=password, separated by commas")
            if name == user:
                return password
        return None

    def require_nats_issuer_seed(self) -> str:
        """The NATS account seed (``SA...``) the auth service signs NATS users with."""
        return _value_or_file("NATS_ISSUER_SEED", self.nats_issuer_seed, self.nats_issuer_seed_file,
                              "create one with `claiim keygen nats-issuer -o FILE`; its public key goes into "
                              "the NATS server's auth_callout issuer").strip()

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError("CLAIIM_DATABASE_URL is not set (postgresql://user@host/db)")
        return self.database_url

    def env(self) -> dict[str, str]:
        """These settings as the CLAIIM_* variables a ``claiim serve`` process reads them from."""
        env = {}
        for name, value in self.model_dump().items():
            if value is not None:
                env[f"CLAIIM_{name.upper()}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return env


K = TypeVar("K")
R = TypeVar("R", ControlKeyring, GateKeyring)


def _load(name: str, value: SecretStr | None, file: Path | None, parse: Callable[[str], K], hint: str, *,
          file_setting: bool = True) -> K:
    """CLAIIM_<name> (or its file) parsed; raises :class:`ConfigError` saying what to set or fix."""
    text = _value_or_file(name, value, file, hint, file_setting=file_setting)
    try:
        return parse(text)
    except (CheckpointError, KeyFormatError) as e:
        raise ConfigError(f"CLAIIM_{name} is not valid: {e}") from e


def _nonempty(parse: Callable[[str], R]) -> Callable[[str], R]:
    def parsed(text: str) -> R:
        ring = parse(text)
        if not len(ring):
            raise KeyFormatError("it lists no key")
        return ring

    return parsed


def _value_or_file(name: str, value: SecretStr | None, file: Path | None, hint: str, *,
                   file_setting: bool = True) -> str:
    """CLAIIM_<name>'s value, else the contents of CLAIIM_<name>_FILE; raises :class:`ConfigError`."""
    text = value.get_secret_value() if value else ""
    if not text and file:
        try:
            text = file.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read CLAIIM_{name}_FILE: {e}") from e
    if not text.strip():
        also = f" (nor CLAIIM_{name}_FILE)" if file_setting else ""
        raise ConfigError(f"CLAIIM_{name} is not set{also}; {hint}")
    return text


class ConfigError(RuntimeError):
    """The service cannot start with this configuration; the message says what to set."""
