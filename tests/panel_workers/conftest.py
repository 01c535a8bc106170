"""The fixtures of the provider tests (PostgreSQL, Redis): defined in ``workers_helpers`` (a
module name of its own, where ``conftest`` would be ambiguous among the test folders)."""

from workers_helpers import postgres, redis  # noqa: F401 - fixtures
