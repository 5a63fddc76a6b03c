"""TLS contexts and bearer tokens (both off by default). Tokens never reach a log line."""

from __future__ import annotations

import hmac
import ssl

from fodcproxy.errors import ConfigError


def load_token(path: str, *, flag: str) -> str:
    """Read a bearer token from a file (surrounding white space dropped).

    Raises:
        ConfigError: naming `flag`, when the file cannot be read or holds no token.
    """
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise ConfigError(flag, f"cannot read {path}: {exc.strerror}") from None
    if not token or any(c.isspace() for c in token):
        raise ConfigError(flag, f"{path} must hold one token with no white space inside")
    return token


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an `authorization` value is `Bearer <token>` (compared in constant time)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def server_context(cert_file: str, key_file: str, *, flag: str, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A server-side TLS context; `alpn` e.g. ["h2"] for gRPC.

    Raises:
        ConfigError: naming `flag`, when the certificate or key cannot be loaded.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(flag, f"cannot load certificate {cert_file} / key {key_file}: {exc}") from None
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def client_context(ca_file: str | None, *, flag: str, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client-side TLS context trusting `ca_file` (or the system's CAs when None).

    Raises:
        ConfigError: naming `flag`, when the CA file cannot be loaded.
    """
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(flag, f"cannot load CA file {ca_file}: {exc}") from None
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
