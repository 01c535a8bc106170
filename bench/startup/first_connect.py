"""Runs a program and records when it first connects to a given address: the instant of its
first byte towards the host (the TCP SYN leaves in ``connect()``).

    python bench/startup/first_connect.py LOG ADDRESS PORT -m MODULE ARGS...
    python bench/startup/first_connect.py LOG ADDRESS PORT SCRIPT ARGS...

Before running the program (``runpy``, as ``python -m MODULE`` or ``python SCRIPT`` would, with
``sys.argv`` set), ``socket.socket.connect`` is wrapped: the first call for (ADDRESS, PORT)
writes ``time.monotonic()`` to LOG (CLOCK_MONOTONIC, one clock for every process on the
machine, so the harness compares it with its own reading taken just before it started this
process). At exit, a second line holds ``time.monotonic()`` again. The wrapper costs the same
for every program measured: it imports only runpy, socket and time before the program runs.
"""

import runpy
import socket
import sys
import time

_original_connect = socket.socket.connect


def main() -> None:
    log, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    target = (address, port)
    seen = []

    def connect(self, where, *args):
        if not seen and tuple(where[:2]) == target:
            seen.append(time.monotonic())
            with open(log, "w") as out:
                out.write(f"{seen[0]!r}\n")
        return _original_connect(self, where, *args)

    socket.socket.connect = connect
    rest = sys.argv[4:]
    try:
        if rest[0] == "-m":
            sys.argv = [rest[1], *rest[2:]]
            runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(rest)
            runpy.run_path(rest[0], run_name="__main__")
    finally:
        with open(log, "a") as out:
            out.write(f"{time.monotonic()!r}\n")
            if not seen:
                out.write("no connection\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
    sys.exit(0)
