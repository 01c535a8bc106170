"""The playbook's files read into one validated, immutable Playbook."""
