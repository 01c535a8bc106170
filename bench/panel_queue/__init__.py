"""Helpers of bench/panel_queue_bench.py: PostgreSQL and Redis as plain processes
(:mod:`.services`)."""
