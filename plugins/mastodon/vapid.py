"""Mastodon's VAPID key pair (Web Push): a real P-256 key pair, made once on the deployer.

Mastodon reads both keys as URL-safe base64: the private key's 32-byte scalar, and the public
key as an uncompressed point (65 bytes), as ``webpush``'s ``generate_key`` makes them.
"""

from __future__ import annotations

import base64

from fedi_run.engine.api import Context, place_secret_files, read_secret_files


def generate_pair() -> tuple[str, str]:
    """A fresh ``(private, public)`` VAPID key pair, URL-safe base64 without padding."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    encode = lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")  # noqa: E731
    return encode(private), encode(public)


def public_of(private: str) -> str:
    """The public key belonging to the URL-safe base64 private key ``private``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    scalar = int.from_bytes(base64.urlsafe_b64decode(private + "=" * (-len(private) % 4)), "big")
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    raw = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def ensure(context: Context, private: str, public: str) -> list[str]:
    """Both key files exist and belong together (mode 0400); made anew only when the private
    key is missing or empty (or ``--rotate-secrets`` names it); a missing or wrong public key
    is derived from the private one."""
    assert context.connection is not None
    found = (
        {}
        if context.rotates(private)
        else read_secret_files(context, context.connection, [private, public])
    )
    if found.get(private, "").strip():
        private_value = found[private].strip()
        public_value = public_of(private_value)
    else:
        private_value, public_value = generate_pair()
    return place_secret_files(
        context, context.connection, {private: private_value, public: public_value}
    )
