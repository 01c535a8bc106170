"""ansible-playbook at its best settings over the workload.

Generated per lab: an inventory (``ansible_host``/``_port``/``_user``,
``ansible_ssh_private_key_file``), an ``ansible.cfg`` and ``bench.yml`` (written as JSON,
which YAML reads). Settings: ``forks = N``, ``pipelining = True``, OpenSSH with
``ControlMaster=auto``, ``ControlPersist=60s`` and a short ``ControlPath`` (``%C``), the lab's
known_hosts with ``StrictHostKeyChecking=yes``, ``gather_facts: false``,
``interpreter_python = /usr/bin/python3`` (no discovery), no retry files, the default
stdout callback and no other. Strategy ``linear`` or ``free`` (``--ansible-strategy``).

Tasks: ``file: state=directory mode=0755``, K × ``copy: content=… mode=0644`` (content a
template with ``{{ inventory_hostname }}``), and ``command: touch … creates=…``. After every
invocation the control masters are closed (untimed), so each invocation opens its own
connections, like every other tool. Changes are read from the PLAY RECAP.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .timing import Invocation, Tool, executable, timed, version_of
from .workload import COMMAND, DIRECTORY, MARKER

RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)


class AnsiblePlaybook(Tool):
    name = "ansible"
    command_note = "`command: touch marker` with `creates: marker`"
    warm_up = False  # a run takes minutes; its byte-code was compiled by pip

    def __init__(self, strategy: str = "free"):
        self.strategy = strategy
        self.label = f"ansible-playbook ({strategy})"

    def version(self) -> str:
        return version_of([executable("ansible-playbook"), "--version"])

    def prepare(self, lab, workload, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.control_dir = Path(
            tempfile.mkdtemp(prefix="fb-ans-", dir="/tmp")
        )  # short: a socket path
        inventory = ["[bench]"]
        for name in workload.hosts:
            info = lab.hosts[name]
            inventory.append(
                f"{name} ansible_host={info.address} ansible_port={info.port} "
                f"ansible_user={info.user} ansible_ssh_private_key_file={lab.identity}"
            )
        (workdir / "inventory.ini").write_text("\n".join(inventory) + "\n")
        ssh_args = (
            f"-F /dev/null -o ControlMaster=auto -o ControlPersist=60s "
            f"-o UserKnownHostsFile={lab.known_hosts_path} -o StrictHostKeyChecking=yes "
            f"-o IdentitiesOnly=yes -o BatchMode=yes -o ControlPath={self.control_dir}/%C"
        )  # ansible.cfg: no % interpolation
        (workdir / "ansible.cfg").write_text(f"""\
[defaults]
inventory = {workdir / "inventory.ini"}
forks = {len(workload.hosts)}
strategy = {self.strategy}
gathering = explicit
host_key_checking = True
retry_files_enabled = False
interpreter_python = /usr/bin/python3
nocolor = True
local_tmp = {workdir / "tmp"}

[ssh_connection]
pipelining = True
ssh_args = {ssh_args}
""")
        tasks = [
            {
                "name": "directory",
                "ansible.builtin.file": {"path": DIRECTORY, "state": "directory", "mode": "0755"},
            }
        ]
        tasks += [
            {
                "name": f"f{i}",
                "ansible.builtin.copy": {
                    "dest": workload.path(i),
                    "mode": "0644",
                    "content": workload.content_template(i, "{{ inventory_hostname }}"),
                },
            }
            for i in workload.indices()
        ]
        tasks.append(
            {"name": "marker", "ansible.builtin.command": {"cmd": COMMAND, "creates": MARKER}}
        )
        play = [{"hosts": "bench", "gather_facts": False, "tasks": tasks}]
        (workdir / "bench.yml").write_text(json.dumps(play, indent=1))
        self.expected_hosts = set(workload.hosts)
        self.count = 0

    def invoke(self, phase: str) -> Invocation:
        self.count += 1
        run = timed(
            [executable("ansible-playbook"), "bench.yml"],
            cwd=self.workdir,
            log=self.workdir / f"{self.count:02d}-{phase}.log",
            env={"ANSIBLE_CONFIG": str(self.workdir / "ansible.cfg")},
        )
        recap = {
            m[1]: m for m in RECAP.finditer(run.output)
        }  # host, ok, changed, unreachable, failed
        changed = None
        if set(recap) == self.expected_hosts and all(m[4] == m[5] == "0" for m in recap.values()):
            changed = sum(int(m[3]) for m in recap.values())
        return Invocation(run.seconds, run.returncode, run.output, run.log, changed)

    def cleanup(self) -> None:
        """Close every control master this tool's runs left (``ssh -O exit``)."""
        for socket_path in self.control_dir.iterdir():
            subprocess.run(
                ["ssh", "-F", "/dev/null", "-S", str(socket_path), "-O", "exit", "bench"],
                capture_output=True,
                timeout=30,
                check=False,
            )

    def close(self) -> None:
        self.cleanup()
        shutil.rmtree(self.control_dir, ignore_errors=True)
