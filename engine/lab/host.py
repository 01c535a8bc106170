"""One lab host: its files under the lab directory and the launcher that starts its sshd.

A host called NAME at 127.0.0.N is an OpenSSH sshd (``sshd -D -e``) listening on
127.0.0.N:22 inside its own mount and UTS namespace (see :mod:`.nsinit`), where:

* the hostname is NAME;
* ``/etc`` and ``/usr/local`` are overlays over the machine's: reads fall through to the
  machine, writes land in ``hosts/NAME/overlay/*/upper`` under the lab directory;
* ``/opt /root /home /srv /var/lib /var/log /var/tmp /tmp`` are private, initially empty
  directories (bind mounts of ``hosts/NAME/private/...``), ``/run`` a private tmpfs;
* the host's own ``/etc/ssh/sshd_config``, ed25519 host key, ``/etc/hostname`` and
  ``/etc/hosts`` (naming every lab host) are in its ``/etc`` overlay, and the deployer's
  public key is in ``/root/.ssh/authorized_keys``; root may log in with that key only.

The host's empty ``/root`` also keeps the machine's slow root ``.bashrc`` out of every command.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fedi_run.engine.lab import keys

OVERLAYS = ("/etc", "/usr/local")
PRIVATE = {
    "/opt": 0o755,
    "/root": 0o700,
    "/home": 0o755,
    "/srv": 0o755,
    "/var/lib": 0o755,
    "/var/log": 0o755,
    "/var/tmp": 0o1777,
    "/tmp": 0o1777,
}
NSINIT = Path(__file__).with_name("nsinit.py")

SSHD_CONFIG = """\
# sshd of the fedi-run lab host {name}: written by `fedi-run lab up`
ListenAddress {address}:{port}
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
MaxSessions 100
MaxStartups 100:30:200
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""


@dataclass(frozen=True)
class HostPlan:
    """What :func:`prepare` laid out for one host and :func:`launch_argv` starts."""

    name: str
    address: str
    port: int
    root: Path
    host_key: str

    @property
    def log_path(self) -> Path:
        return self.root / "sshd.log"


def _mkdir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


def prepare(
    root: Path,
    name: str,
    address: str,
    port: int,
    deployer_public: str,
    all_hosts: dict[str, str],
) -> HostPlan:
    """Create ``root`` (the host's directory) with its overlays, private directories, host
    key, sshd config and authorized key. ``all_hosts`` maps every lab host name to its
    address, for the host's ``/etc/hosts``."""
    _mkdir(root, 0o700)
    for target in OVERLAYS:
        base = root / "overlay" / target.strip("/").replace("/", "-")
        _mkdir(base / "upper", 0o755)
        _mkdir(base / "work", 0o700)
    for target, mode in PRIVATE.items():
        _mkdir(root / "private" / target.strip("/"), mode)

    etc = root / "overlay" / "etc" / "upper"
    _mkdir(etc / "ssh", 0o755)
    pair = keys.generate_ed25519()
    keys.write_pair(pair, etc / "ssh" / "ssh_host_ed25519_key", f"root@{name}")
    (etc / "ssh" / "sshd_config").write_text(
        SSHD_CONFIG.format(name=name, address=address, port=port)
    )
    (etc / "hostname").write_text(f"{name}\n")
    try:
        machine_hosts = Path("/etc/hosts").read_text()
    except OSError:
        machine_hosts = "127.0.0.1 localhost\n"
    lab_lines = "".join(f"{addr}\t{host}\n" for host, addr in all_hosts.items())
    (etc / "hosts").write_text(machine_hosts.rstrip("\n") + "\n# fedi-run lab hosts\n" + lab_lines)

    ssh_dir = root / "private" / "root" / ".ssh"
    _mkdir(ssh_dir, 0o700)
    keys.write_private(ssh_dir / "authorized_keys", f"{deployer_public} fedi-run-lab\n".encode())
    return HostPlan(name, address, port, root, pair.public)


def _covers(target: str, path: Path) -> bool:
    return path == Path(target) or Path(target) in path.parents


def launch_spec(plan: HostPlan, sshd: str) -> dict:
    """The :mod:`.nsinit` spec for ``plan``: mounts in an order that keeps every source
    reachable (the one mount that would hide the lab directory itself comes last)."""
    mounts = []
    for target in OVERLAYS:
        base = plan.root / "overlay" / target.strip("/").replace("/", "-")
        mounts.append(
            {
                "kind": "overlay",
                "target": target,
                "lower": target,
                "upper": str(base / "upper"),
                "work": str(base / "work"),
            }
        )
    mounts.append({"kind": "tmpfs", "target": "/run", "mode": "0755"})
    for target in PRIVATE:
        if os.path.isdir(target):
            source = plan.root / "private" / target.strip("/")
            mounts.append({"kind": "bind", "source": str(source), "target": target})
    mounts.sort(key=lambda m: _covers(m["target"], plan.root))
    return {
        "hostname": plan.name,
        "mounts": mounts,
        "mkdirs": [["/run/sshd", "0755"]],
        "argv": [sshd, "-D", "-e", "-f", "/etc/ssh/sshd_config"],
    }


def launch_argv(plan: HostPlan, sshd: str) -> list[str]:
    """The command that starts the host: this Python, isolated, running :mod:`.nsinit`."""
    spec = json.dumps(launch_spec(plan, sshd), separators=(",", ":"))
    return [sys.executable, "-I", "-S", str(NSINIT), spec]


def overlaps_overlay(directory: Path) -> str | None:
    """The overlaid directory (``/etc`` or ``/usr/local``) that contains ``directory``, if any:
    a lab directory there would be its own overlay's lower layer."""
    for target in OVERLAYS:
        if _covers(target, directory.resolve()):
            return target
    return None
