"""The simulator's OAuth token endpoint, as Google's is for service accounts.

google-auth signs a JWT assertion with the service account's private key and POSTs it
(``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``) to the key file's
``token_uri``; the answer is ``{"access_token", "expires_in", "token_type": "Bearer"}``.
Here the assertion is verified against the public keys of the service accounts the
simulator knows (``TokenIssuer.trust``), the access token is random, and every Vertex or
Cloud Storage request is checked against the tokens handed out: unknown, revoked and
expired tokens are refused with 401, as Google does.

``make_service_account_key`` writes a throwaway key file (a real RSA key) whose
``token_uri`` points at a simulator: how ``make demo-vertex`` and the tests get
credentials through google-auth's own flow, with no flag of batchveo's.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
"""google-auth puts this audience in its assertions whatever the key file's token_uri."""
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass(frozen=True)
class ServiceAccountKey:
    """What a key file holds, and the public half the simulator verifies with."""

    info: dict[str, Any]
    public_pem: str

    @property
    def email(self) -> str:
        return str(self.info["client_email"])

    @property
    def key_id(self) -> str:
        return str(self.info["private_key_id"])

    @property
    def project(self) -> str | None:
        project = self.info.get("project_id")
        return str(project) if project else None

    def write(self, path: Path) -> Path:
        """The key file, readable by its owner only (it holds a private key), written to a
        temporary name, synced and renamed: a reader started meanwhile never sees half."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.info, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path


def make_service_account_key(
    token_uri: str, project: str = "batchveo-sim", name: str = "batchveo-sim"
) -> ServiceAccountKey:
    """A throwaway service account with a fresh 2048-bit RSA key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": private_pem,
        "client_email": f"{name}@{project}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbits(63)),
        "token_uri": token_uri,
    }
    return ServiceAccountKey(info, public_pem)


def public_key_of(info: dict[str, Any]) -> str:
    """The public key (PEM) of a service-account key file's private key."""
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(str(info["private_key"]).encode(), None)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class _Issued:
    email: str
    expires_at: float


@dataclass(frozen=True)
class Refusal:
    """Why a request's credentials are refused: Google's 401 message and the
    ``google.rpc.ErrorInfo`` reason it gives with it."""

    message: str
    reason: str


_SEE = (
    " Expected OAuth 2 access token, login cookie or other valid authentication credential."
    " See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
MISSING = Refusal("Request is missing required authentication credential." + _SEE,
                  "CREDENTIALS_MISSING")  # fmt: skip
INVALID = Refusal("Request had invalid authentication credentials." + _SEE,
                  "ACCESS_TOKEN_TYPE_UNSUPPORTED")  # fmt: skip
EXPIRED = Refusal("Request had invalid authentication credentials." + _SEE,
                  "ACCESS_TOKEN_EXPIRED")  # fmt: skip


@dataclass
class TokenIssuer:
    """Verifies assertions, hands out tokens, and checks them on every request."""

    lifetime_s: float = 3600.0
    clock: Callable[[], float] = field(default=time.time, repr=False)
    _keys: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    _tokens: dict[str, _Issued] = field(default_factory=dict, repr=False)
    issued: int = 0
    refused: int = 0

    def trust(self, key_id: str, email: str, public_pem: str) -> None:
        """Accept assertions signed by this key for this service account."""
        self._keys[key_id] = (email, public_pem)

    def trust_key_file(self, info: dict[str, Any]) -> None:
        self.trust(str(info["private_key_id"]), str(info["client_email"]), public_key_of(info))

    def issue(self, form: dict[str, str], token_url: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON body) for one token request, as Google's endpoint answers."""
        from google.auth import exceptions, jwt

        if form.get("grant_type") != GRANT_TYPE or not form.get("assertion"):
            return 400, {"error": "unsupported_grant_type", "error_description": "Bad grant"}
        assertion = form["assertion"]
        try:
            header = jwt.decode_header(assertion)  # type: ignore[no-untyped-call]
            email, public_pem = self._keys[str(header.get("kid"))]
            claims = jwt.decode(  # type: ignore[no-untyped-call]
                assertion,
                certs={str(header["kid"]): public_pem},
                audience=[GOOGLE_TOKEN_AUDIENCE, token_url],
                clock_skew_in_seconds=30,
            )
        except (KeyError, ValueError, exceptions.GoogleAuthError):
            self.refused += 1
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if claims.get("iss") != email or SCOPE not in str(claims.get("scope", "")).split():
            self.refused += 1
            return 400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope."}
        token = self.grant(email)
        return 200, {
            "access_token": token,
            "expires_in": int(self.lifetime_s),
            "token_type": "Bearer",
        }

    def grant(self, email: str) -> str:
        """A new live token for ``email`` (what a verified assertion gets)."""
        token = "ya29.sim-" + secrets.token_urlsafe(24)
        self._tokens[token] = _Issued(email, self.clock() + self.lifetime_s)
        self.issued += 1
        return token

    def verify(self, authorization: str | None) -> str | Refusal:
        """The service account a live bearer token was granted to, or why it is refused.

        Only ``Bearer <token>`` counts, as on Google: a token handed out here and not
        expired (``lifetime_s`` after it was granted, on ``clock``)."""
        prefix = "Bearer "
        if not authorization or not authorization.startswith(prefix):
            return MISSING
        issued = self._tokens.get(authorization[len(prefix) :])
        if issued is None:
            return INVALID
        if self.clock() >= issued.expires_at:
            return EXPIRED
        return issued.email

    def check(self, authorization: str | None) -> str | None:
        """None if the bearer token is live, else why it is refused (for a 401)."""
        verdict = self.verify(authorization)
        return verdict.message if isinstance(verdict, Refusal) else None

    def expire_all(self) -> None:
        """Every token handed out stops working now (a test's "the token expired")."""
        for issued in self._tokens.values():
            issued.expires_at = min(issued.expires_at, self.clock())

    def known(self, token: str) -> bool:
        """Whether ``token`` was handed out here (for the leak counters)."""
        return token in self._tokens
