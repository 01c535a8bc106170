"""The mastodon plugin."""
