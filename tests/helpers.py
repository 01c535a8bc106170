"""Constants shared by the tests in this folder (imported as ``helpers``)."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUPPORT = Path(__file__).resolve().parent / "support"

MINIMAL = """
[deployment]
name = "test"
domain = "example.org"

[hosts.web]
address = "127.0.0.2"
"""
