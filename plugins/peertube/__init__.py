"""The peertube plugin."""
