"""A plugin whose name clashes with the built-in mastodon plugin."""

PLUGIN_NAME = "mastodon"
