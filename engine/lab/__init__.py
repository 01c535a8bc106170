"""The lab: real target hosts (sshd in namespaces on 127.0.0.0/8) and a Pebble ACME server.

Importing this package costs nothing: ``fedi-run --help`` imports :mod:`.cli` through it.
The public names below are loaded on first use.

* :class:`Lab` (:mod:`.session`) — a handle on a running lab: ``Lab.up``, ``Lab.open``,
  ``.hosts``, ``.inventory_path``, ``.acme``, ``.run``, ``.read_file``, ``.write_file``,
  ``.down``;
* :func:`up`, :func:`down`, :func:`status` (:mod:`.control`) — start, stop, inspect;
* :class:`LabState`, :class:`HostInfo`, :class:`AcmeInfo` (:mod:`.state`) — what runs;
* :class:`CommandResult` (:mod:`.ssh`) — what a command did.

See docs/lab.md.
"""

from __future__ import annotations

_LAZY = {
    "Lab": "session",
    "up": "control",
    "down": "control",
    "status": "control",
    "LabState": "state",
    "HostInfo": "state",
    "AcmeInfo": "state",
    "CommandResult": "ssh",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{module}"), name)
