"""The acme plugin."""
