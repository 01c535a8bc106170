"""SSH key pairs for the lab: the deployer's key and each host's ed25519 host key.

Keys are generated with ``cryptography`` (no ``ssh-keygen`` process) and written in OpenSSH
format, the private half with mode 0600.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class KeyPair:
    """An ed25519 key pair: ``private_openssh`` is the OpenSSH private key file's content,
    ``public`` the public key line without comment (``ssh-ed25519 AAAA…``)."""

    private_openssh: bytes
    public: str


def generate_ed25519() -> KeyPair:
    """A fresh ed25519 key pair."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(private, public.decode("ascii"))


def write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` with mode 0600 from the start (never briefly readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode: narrow it before writing
        f.write(content)


def write_pair(pair: KeyPair, private_path: Path, comment: str) -> None:
    """Write ``private_path`` (0600) and ``private_path.pub`` (0644, with ``comment``)."""
    write_private(private_path, pair.private_openssh)
    public_path = Path(f"{private_path}.pub")
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o644)  # public, but exactly 0644 whatever the umask
        f.write(f"{pair.public} {comment}\n")
