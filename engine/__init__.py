"""fedi-run's engine: the playbook model, plugins, the task graph, selection and planning.

Installed as ``fedi_run.engine``. Importing it has no side effects and imports nothing heavy;
each concept lives in its own module (``playbook``, ``hooks``, ``graph``, ``selection``, ...).
"""

__version__ = "0.1.0"
