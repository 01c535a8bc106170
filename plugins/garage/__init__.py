"""The garage plugin."""
