"""The pixelfed plugin."""
