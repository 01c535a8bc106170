"""The tuned Fabric script of the start-up benchmark: one connection, `true`, exit.

    python bench/startup/fabric_true.py ADDRESS PORT USER IDENTITY KNOWN_HOSTS

Imports only what it uses (socket, sys, paramiko, fabric); pins the host key (the lab's
known_hosts, ``RejectPolicy``), reads no SSH config, sets ``TCP_NODELAY`` and runs ``true``
with ``hide=True, in_stream=False`` and invoke's poll period at 1 ms, like the Fabric loop of
``bench/run/fabric_loop.py``. Exit status: that of ``true`` (0).
"""

import socket
import sys

import invoke.runners
import paramiko
from fabric import Config, Connection


def main(address: str, port: str, user: str, identity: str, known_hosts: str) -> int:
    invoke.runners.Runner.input_sleep = 0.001
    conn = Connection(
        address,
        user=user,
        port=int(port),
        config=Config(ssh_config=paramiko.SSHConfig()),
        connect_kwargs={"key_filename": identity, "look_for_keys": False, "allow_agent": False},
    )
    conn.client.load_host_keys(known_hosts)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.open()
    conn.client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        return conn.run("true", hide=True, in_stream=False, warn=True).exited
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
