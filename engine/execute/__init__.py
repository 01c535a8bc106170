"""Carrying out a plan over SSH: scheduling, performing operations as scripts, connections."""
