"""Settings, read once from the environment (``CLAIIM_<FIELD>``) into a frozen object.

Each field's description is the documentation: docs/settings.md is :func:`settings_table`'s output
(``scripts/gen-docs`` writes it; a test fails when the file and this class disagree).

Keyrings (``*_VERIFIERS``, ``*_KEYS``) hold one key per line or comma-separated entry, each
optionally followed by ``revoked-after N`` (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from claiim_core.checkpoint import CheckpointError, Signer, Verifier
from claiim_core.eventauth import ControlKeyring, GateKey, GateKeyring, KeyFormatError, Trusted
from claiim_core.names import Names
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLAIIM_", frozen=True, extra="ignore")

    url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL(s), comma-separated for a cluster")
    stream_replicas: int = Field(default=1, ge=1, le=5, description="copies of every stream (3 on a 3-node cluster)")
    stream_compression: Literal["none", "s2"] = Field(default="s2",
        description=("JetStream's compression of the streams claiim creates (s2 cuts the decision stream's files "
                     "to about a third and the OCSF stream's to a ninth; none: as written)"))
    ocsf_max_age: float = Field(default=7 * 24 * 3600.0, ge=0,
        description=("seconds the OCSF stream keeps a rendered decision (0: for ever); a SIEM that falls behind "
                     "re-reads from Chron (`claiim chron export --since`)"))
    ocsf_max_bytes: int = Field(default=-1, ge=-1,
        description="the OCSF stream's size limit in bytes, oldest dropped first (-1: none besides the age)")
    connect_wait: float = Field(default=30.0, gt=0,
        description=("seconds a service waits for its first NATS connection before it exits with the last error (once "
                     "connected, it reconnects for ever)"))
    database_url: str | None = Field(default=None, description="PostgreSQL URL for Chron (postgresql://user@host/db)")
    namespace: str = Field(default="claiim", description="prefix of every subject and stream")
    token_secret: SecretStr | None = Field(default=None,
        description=("key of the token hashes (HMAC-SHA256); required by the gate, control, Chron and auth; make one "
                     "with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"))
    admin_token: SecretStr | None = Field(default=None,
        description="the operator's admin token (bootstrap, break-glass); required by control and Chron")
    publish_timeout: float = Field(default=2.0, gt=0,
        description="seconds the gate waits for a PubAck before it answers DENY chron:unavailable")
    chron_batch: int = Field(default=1000, ge=1, le=10_000, description="messages per batch of Chron and the OCSF feed")
    chron_packing: Literal["none", "zstd"] = Field(default="none",
        description=("how Chron stores each event's bytes in chron_events: none (as they are), or zstd (Zstandard "
                     "with a fixed dictionary: about 1,100 instead of 1,440 bytes a decision on disk, for about 10 µs "
                     "of Chron's CPU a decision; rows of either form are read alike)"))
    checkpoint_key: SecretStr | None = Field(default=None,
        description="Chron's checkpoint signing key (`claiim keygen checkpoint NAME`); required by Chron")
    checkpoint_key_file: Path | None = Field(default=None,
        description="... or a file holding it (Chron needs one of the two)")
    checkpoint_interval: float = Field(default=5.0, gt=0, le=5.0,
        description="longest seconds between checkpoints while leaves come")
    checkpoint_dir: Path | None = Field(default=None,
        description="a folder Chron mirrors its checkpoints and leaf batches to")
    archive: str | None = Field(default=None,
        description=("where Chron archives sealed segments of the log: a folder, or s3://BUCKET/PREFIX for an "
                     "S3-compatible bucket (`pip install 'claiim-server[s3]'`); unset: no archive, and the decision "
                     "stream keeps everything"))
    archive_endpoint: str | None = Field(default=None, pattern=r"^https?://",
        description=("the URL of an S3-compatible server other than AWS's; credentials are boto3's usual ones "
                     "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, an instance role)"))
    archive_segment: int = Field(default=65_536, ge=16, le=1 << 24,
        description="leaves per archive segment, a power of two")
    archive_trim: bool = Field(default=True,
        description=("with an archive, trim the decision stream of what is archived and older than "
                     "CLAIIM_DECISIONS_KEEP"))
    decisions_keep: float = Field(default=8 * 24 * 3600.0, ge=0,
        description=("seconds an archived decision stays in the decision stream before it is trimmed (an approval's "
                     "subject stays at least 8 days)"))
    chron_origin: str = Field(default="", description="the log's name in its checkpoints (default claiim/<namespace>)")
    proposal_ttl: float = Field(default=86_400.0, gt=0, le=7 * 86_400.0,
        description="seconds a proposal waits for approvals (at most 7 days)")
    checkpoint_verifier: str | None = Field(default=None,
        description=("the verifier key of Chron's checkpoints: the admin UI's, and the CLI's default `--key` for "
                     "proofs and `chron verify`"))
    http_port: int | None = Field(
        default=None, ge=0, le=65_535,
        description=("the port of this process's /metrics, /healthz and /readyz (0: any free port; unset: none); "
                     "`claiim serve --http-port`"))
    http_host: str = Field(default="127.0.0.1", description="the address of that endpoint")
    otlp_endpoint: str | None = Field(
        default=None, pattern=r"^https?://",
        description=("the base URL of an OpenTelemetry collector's OTLP/HTTP receiver (e.g. http://127.0.0.1:4318): "
                     "the gate exports a span per check to its /v1/traces, the child of the agent's trace context "
                     "(needs `pip install 'claiim-server[otel]'`; unset: no spans)"))
    log_format: Literal["text", "json"] = Field(
        default="text", description="`text`: a line a record, for people; `json`: a JSON object a line")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="the least severe records logged")
    ui_host: str = Field(default="127.0.0.1", description="the admin UI's listening address")
    ui_port: int = Field(default=8480, ge=0, le=65_535, description="the admin UI's port (0: any free port)")
    ui_secure_cookies: bool = Field(default=False, description="mark the UI's session cookie Secure (behind HTTPS)")
    ui_session_idle: float = Field(default=1800.0, gt=0,
        description="seconds of inactivity after which a UI session ends")
    control_key: SecretStr | None = Field(default=None,
        description=("the control service's signing key for control events (`claiim keygen control`); required by "
                     "control"))
    control_key_file: Path | None = Field(default=None, description="... or a file holding it")
    control_verifiers: str = Field(default="",
        description="the control verifier keys trusted (a keyring); required by the gate, control, Chron and auth")
    control_verifiers_file: Path | None = Field(default=None, description="... or a file holding them")
    gate_key: SecretStr | None = Field(default=None,
        description="this gate's MAC key for decision events (`claiim keygen gate ID`); required by the gate")
    gate_key_file: Path | None = Field(default=None, description="... or a file holding it")
    gate_keys: SecretStr | None = Field(default=None,
        description=("the gate keys whose decisions are accepted (a keyring); required by Chron and the OCSF feed; "
                     "gates verify approvals with it (without it, a gate knows only its own key)"))
    gate_keys_file: Path | None = Field(default=None, description="... or a file holding them")
    nats_passwords: SecretStr | None = Field(default=None,
        description=("user=password,...: each service's NATS user (gate, control, chron, ocsf, ui, auth, sys); "
                     "without, services log in as the URL says"))
    nats_issuer_seed: SecretStr | None = Field(default=None,
        description="the auth service's NATS account seed (SA..., `claiim keygen nats-issuer`); required by auth")
    nats_issuer_seed_file: Path | None = Field(default=None, description="... or a file holding it")

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

    @field_validator("archive_segment")
    @classmethod
    def _power_of_two(cls, size: int) -> int:
        if size & (size - 1):
            raise ValueError(f"must be a power of two (16, 32, ... 65536), not {size}")
        return size

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

    def gate_keyring_with(self, own: GateKey) -> GateKeyring:
        """The keys a gate verifies approvals' PENDING decisions with: CLAIIM_GATE_KEYS when set (every
        replica's key, so that any replica ends an approval another one recorded), else its own key."""
        if self.gate_keys is None and self.gate_keys_file is None:
            return GateKeyring([Trusted(own)])
        ring = self.require_gate_keyring()
        return ring if ring.knows(own.id) else GateKeyring([*ring.entries(), Trusted(own)])

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


def settings_table() -> str:
    """The settings as a Markdown table: variable, default, meaning (docs/settings.md)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default()
        shown = "" if default is None or default == "" else f"`{default}`"
        rows.append(f"| `CLAIIM_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows) + "\n"


def settings_document() -> str:
    """docs/settings.md: the table, with what a reader needs around it."""
    return ("# Settings\n\n"
            "Every claiim service reads its settings from `CLAIIM_*` environment variables (the CLI also from\n"
            "`./.claiim/env`, as `claiim up` writes it). This page is generated from the settings class\n"
            "(`claiim_runtime.settings.Settings`) by `scripts/gen-docs`.\n\n"
            + settings_table()
            + "\nKeyrings (`*_VERIFIERS`, `*_KEYS`) hold one key per line or comma-separated entry, each optionally\n"
            "followed by `revoked-after N` (docs/security.md). A value and its `_FILE` variant are alternatives:\n"
            "the value wins when both are set.\n")


class ConfigError(RuntimeError):
    """The service cannot start with this configuration; the message says what to set."""
