"""The JWTs of NATS's auth callout (pure): decoding the server's request, signing the answer.

nats-server sends ``$SYS.REQ.USER.AUTH`` a JWT signed by the server's nkey, holding the connecting
client's options (user, password or token) and a one-time user nkey. The answer is a JWT signed by
the issuer account key named in the server's ``auth_callout`` block, addressed to the server
(``aud``: its id) and to that user nkey (``sub``), carrying either an error or a user JWT with the
user's permissions (``aud``: the account the user is placed in). The format is nats-io/jwt v2:
``base64url(header) . base64url(claims) . base64url(ed25519 signature)`` with the header
``{"typ":"JWT","alg":"ed25519-nkey"}`` and ``jti`` the base32 SHA-512/256 of the claims.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from claiim_auth.nkeys import PREFIX_SERVER, PREFIX_USER, KeyPair, NkeyError, decode_public, verify

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
REQUEST_AUDIENCE = "nats-authorization-request"


class JwtError(ValueError):
    """Not a JWT this service accepts; the message says why."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise JwtError(f"not base64url: {e}") from e


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def encode(claims: dict[str, Any], signer: KeyPair, now: int) -> str:
    """Sign ``claims`` (``iss``, ``iat`` and ``jti`` are set here)."""
    body = {**claims, "iss": signer.public_key, "iat": now}
    body["jti"] = base64.b32encode(hashlib.new("sha512_256", _json(body)).digest()).decode().rstrip("=")
    unsigned = f"{_b64(_json(HEADER))}.{_b64(_json(body))}"
    return f"{unsigned}.{_b64(signer.sign(unsigned.encode()))}"


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What the server asks about one connecting client."""

    server_id: str
    server_name: str
    user_nkey: str
    client_id: int
    client_host: str
    user: str
    password: str
    token: str


def decode_request(token: str) -> AuthRequest:
    """The request in the server's JWT, after checking its form and the server's signature."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError("a JWT has three parts")
    try:
        header, claims = json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1]))
    except json.JSONDecodeError as e:
        raise JwtError(f"not JSON: {e}") from e
    if not isinstance(header, dict) or str(header.get("alg", "")).lower() != "ed25519-nkey":
        raise JwtError("not an ed25519-nkey JWT")
    if not isinstance(claims, dict) or claims.get("aud") != REQUEST_AUDIENCE:
        raise JwtError("not an authorization request")
    issuer = str(claims.get("iss", ""))
    if not verify(issuer, PREFIX_SERVER, f"{parts[0]}.{parts[1]}".encode(), _unb64(parts[2])):
        raise JwtError("not signed by the server key it names")
    nats = claims.get("nats") or {}
    server, client, opts = nats.get("server_id") or {}, nats.get("client_info") or {}, nats.get("connect_opts") or {}
    user_nkey = str(nats.get("user_nkey", ""))
    try:
        decode_public(user_nkey, PREFIX_USER)
    except NkeyError as e:
        raise JwtError(f"the request's user nkey: {e}") from e
    return AuthRequest(server_id=str(server.get("id", "")), server_name=str(server.get("name", "")),
                       user_nkey=user_nkey, client_id=int(client.get("id", 0)), client_host=str(client.get("host", "")),
                       user=str(opts.get("user", "")), password=str(opts.get("pass", "")),
                       token=str(opts.get("auth_token", "")))


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()


def user_jwt(request: AuthRequest, name: str, account: str, permissions: Permissions, signer: KeyPair,
             now: int, expires: int | None = None) -> str:
    """A user of ``account`` named ``name`` (what the server's monitoring shows) with ``permissions``;
    with ``expires`` (unix seconds) the server disconnects the user then."""
    pub: dict[str, list[str]] = {"allow": list(permissions.publish)}
    if permissions.publish_deny:
        pub["deny"] = list(permissions.publish_deny)
    nats = {"pub": pub, "sub": {"allow": list(permissions.subscribe)}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2}
    claims: dict[str, Any] = {"sub": request.user_nkey, "aud": account, "name": name, "nats": nats}
    if expires is not None:
        claims["exp"] = expires
    return encode(claims, signer, now)


def response(request: AuthRequest, signer: KeyPair, now: int, *, user: str = "", error: str = "") -> bytes:
    """The answer to ``request``: a user JWT, or an error (the client is refused)."""
    nats: dict[str, Any] = {"type": "authorization_response", "version": 2}
    if user:
        nats["jwt"] = user
    else:
        nats["error"] = error or "not authorized"
    return encode({"sub": request.user_nkey, "aud": request.server_id, "nats": nats}, signer, now).encode()
