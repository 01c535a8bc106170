"""Start, inspect and stop a lab: :func:`up`, :func:`status`, :func:`down`.

``up`` on a directory whose lab is still running is **refused** (:class:`LabError` naming the
directory and ``fedi-run lab down``); a lab whose processes are all gone (say, after a
reboot) is cleaned away and a new one started. Labs in different directories never share an
address: each host takes the next loopback address where nothing listens on port 22,
chosen under a machine-wide lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fedi_run.engine.errors import LabError
from fedi_run.engine.lab import addresses, host, inventory, keys, pebble, prereq, procs, state
from fedi_run.engine.lab.state import HostInfo, LabState, Proc

USER = "root"
PORT = 22
START_TIMEOUT = 10.0


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    os.chmod(path, mode)


def _publish(lab: LabState) -> None:
    """Write ``lab.json``, each host's base NixOS configuration, ``inventory.toml`` (which
    names them) and ``known_hosts``."""
    state.save(lab)
    for info in lab.hosts:
        path = inventory.base_configuration_path(lab, info.name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write(path, inventory.render_base_configuration(info.name))
    _write(lab.inventory_path, inventory.render(lab))
    _write(lab.known_hosts_path, inventory.render_known_hosts(lab))


def _log_tail(path: Path, size: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-size:].strip() or "(empty log)"
    except OSError:
        return "(no log)"


def _start_hosts(lab: LabState, names: tuple[str, ...], sshd: str) -> LabState:
    """Lay out and launch every host in parallel; wait until all listen (under the machine
    lock held by the caller). The returned state records PIDs and namespaces."""
    addrs = addresses.allocate(len(names), PORT)
    (lab.dir / "hosts").mkdir(mode=0o700, exist_ok=True)
    table = dict(zip(names, addrs))
    plans = [
        host.prepare(lab.dir / "hosts" / n, n, a, PORT, lab.public_key, table)
        for n, a in table.items()
    ]
    hosts = []
    for plan in plans:
        proc = procs.spawn(host.launch_argv(plan, sshd), plan.log_path)
        hosts.append(HostInfo(plan.name, plan.address, PORT, USER, plan.host_key, plan.root, proc))
    lab = replace(lab, hosts=tuple(hosts))
    state.save(lab)  # from here on, `down` can find them whatever happens next
    return replace(lab, hosts=tuple(_listening(hosts)))


def _listening(hosts: list[HostInfo]) -> list[HostInfo]:
    """Wait until every launched host listens; the hosts with their mount namespaces recorded.
    LabError (with each failed host's log) if one died or did not listen in time, or is not in
    a namespace of its own."""
    alive = lambda: all(procs.is_running(h.process) for h in hosts)  # noqa: E731
    pending = addresses.wait_listening([(h.address, h.port) for h in hosts], START_TIMEOUT, alive)
    if pending or not alive():
        failed = [
            h for h in hosts if (h.address, h.port) in pending or not procs.is_running(h.process)
        ]
        details = "\n".join(f"  {h.name}: {_log_tail(h.root / 'sshd.log')}" for h in failed)
        raise LabError(f"error: lab host(s) failed to start:\n{details}")
    machine = procs.machine_namespaces()
    hosts = [replace(h, mnt_ns=procs.mount_namespace(h.process.pid)) for h in hosts]
    if any(h.mnt_ns in machine or not h.mnt_ns for h in hosts):
        raise LabError("error: a lab host is listening but not in a namespace of its own")
    return hosts


def up(directory: Path | str, hosts: Sequence[str], *, acme: bool = False) -> LabState:
    """Start a lab in ``directory``: one target host per name and, with ``acme``, Pebble.

    Returns the new :class:`LabState` once every host listens and Pebble answers; its
    inventory, known_hosts and state files are written. Raises :class:`LabError` when a
    prerequisite is missing, a name is invalid, a lab is already up in ``directory``, or
    something fails to start (then everything started so far is stopped again).
    """
    names = state.validate_host_names(list(hosts))
    if not names and not acme:
        raise LabError("error: nothing to start: give --hosts NAME[,NAME...] and/or --acme")
    tools = prereq.check(acme)
    directory = Path(directory).absolute()
    overlaid = host.overlaps_overlay(directory)
    if overlaid:
        raise LabError(
            f"error: the lab directory {directory} is inside {overlaid}, which "
            "every lab host overlays; choose a directory elsewhere"
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _dir_lock(directory):
        existing = state.load(directory)
        if existing is not None:
            if _running(existing):
                raise LabError(
                    f"error: a lab is already up in {directory} (hosts: "
                    f"{', '.join(h.name for h in existing.hosts) or 'none'}); stop it first "
                    f"with `fedi-run lab down --dir {directory}`, then start the lab you want"
                )
            _stop_and_remove(existing)  # stale: its processes are gone (e.g. after a reboot)
        else:
            foreign = sorted(p.name for p in directory.iterdir() if p.name not in state.LAB_ENTRIES)
            if foreign:
                raise LabError(
                    f"error: {directory} holds no lab but is not empty ({', '.join(foreign[:5])}"
                    f"{', ...' if len(foreign) > 5 else ''}); give `--dir` a new or empty "
                    "directory, which `fedi-run lab down` may delete"
                )
            _remove_entries(directory)  # leftovers of an `up` that never saved its state
        deployer = directory / "deployer"
        deployer.mkdir(mode=0o700, exist_ok=True)
        pair = keys.generate_ed25519()
        keys.write_pair(pair, deployer / "id_ed25519", "fedi-run-lab-deployer")
        lab = LabState(dir=directory, identity=deployer / "id_ed25519", public_key=pair.public)
        state.save(lab)
        try:
            with addresses.machine_lock():
                if names:
                    lab = _start_hosts(lab, names, tools.sshd)
                    state.save(lab)
                if acme:
                    lab = replace(lab, acme=pebble.launch(directory / "acme", tools.pebble))
                    state.save(lab)
                    pebble.wait_ready(lab.acme)
            _publish(lab)
        except BaseException:
            recorded = state.load(directory) or lab
            _stop_and_remove(recorded, lab)
            for proc in processes_of(recorded) + processes_of(lab):  # collect exited children
                if proc:
                    procs.reap(proc.pid)
            raise
    return lab


def processes_of(lab: LabState) -> list[Proc | None]:
    """The processes ``lab`` recorded (None where a part has none yet)."""
    return [h.process for h in lab.hosts] + [lab.acme.process if lab.acme else None]


def _running(lab: LabState) -> bool:
    return any(procs.is_running(p) for p in processes_of(lab))


def _victims(labs: list[LabState]) -> list[Proc]:
    """Every live process the lab(s) started: recorded PIDs, and every process in a host's
    mount namespace when that namespace is provably the host's."""
    found: dict[int, Proc] = {}
    hosts = {h.name + str(h.root): h for lab in labs for h in lab.hosts}.values()
    machine = procs.machine_namespaces()
    namespaces: dict[str, HostInfo] = {}
    for h in hosts:
        live = procs.is_running(h.process)
        if live:
            found[h.process.pid] = h.process
        for ns in {procs.mount_namespace(h.process.pid) if live else "", h.mnt_ns} - machine:
            if ns:
                namespaces[ns] = h
    for ns, members in procs.namespace_members(set(namespaces)).items():
        # a namespace is the host's only if its mount table shows the host's directories
        # (a launcher that has not unshared yet, or a later namespace reusing the inode
        # number, does not)
        marker = str(namespaces[ns].root)
        if any(procs.mentions(m.pid, marker) for m in members[:3]):
            found.update((m.pid, m) for m in members)
    for lab in labs:
        if lab.acme and procs.is_running(lab.acme.process):
            found[lab.acme.process.pid] = lab.acme.process
    return list(found.values())


def _stop_and_remove(*labs: LabState) -> None:
    """Stop every process of ``labs`` (all views of one lab directory), check none is left,
    then delete the lab's own entries from its directory (and the directory if empty)."""
    for _ in range(3):  # a process may fork while we stop it: look again
        victims = _victims(list(labs))
        if not victims:
            break
        survivors = procs.terminate(victims)
        if survivors:
            pids = ", ".join(str(p.pid) for p in survivors)
            raise LabError(
                f"error: could not stop lab processes {pids}; state kept in {labs[0].dir}"
            )
    else:
        raise LabError(f"error: lab processes keep appearing; state kept in {labs[0].dir}")
    _remove_entries(labs[0].dir)


def _remove_entries(directory: Path) -> None:
    """Delete the lab's own entries (:data:`state.LAB_ENTRIES`) from ``directory``."""
    for entry in state.LAB_ENTRIES:
        if entry == ".lock":
            continue
        path = directory / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


@dataclass(frozen=True)
class Status:
    """One line of ``lab status``: a host (or the ACME server, ``name == "acme"``)."""

    name: str
    endpoint: str
    pid: int | None
    running: bool


def status(directory: Path | str) -> tuple[LabState, list[Status]]:
    """The lab in ``directory`` and whether each part of it runs (process alive and
    listening). :class:`LabError` when there is no lab there."""
    lab = state.require(Path(directory).absolute())
    listening = addresses.listeners()
    rows = [
        Status(
            h.name,
            f"{h.address}:{h.port}",
            h.process.pid if h.process else None,
            procs.is_running(h.process) and (h.address, h.port) in listening,
        )
        for h in lab.hosts
    ]
    if lab.acme:
        p = lab.acme.process
        rows.append(Status("acme", lab.acme.server, p.pid if p else None, procs.is_running(p)))
    return lab, rows


def down(directory: Path | str) -> LabState | None:
    """Stop everything the lab in ``directory`` started and remove its state and files.

    Returns the state that was stopped, or None when there was no lab (not an error: ``down``
    is idempotent). Raises :class:`LabError` if a process cannot be stopped (state is kept).
    Mounts need no unmounting: they lived in the hosts' mount namespaces, which the kernel
    frees with their last process.
    """
    directory = Path(directory).absolute()
    if not state.state_path(directory).exists():
        return None
    with _dir_lock(directory):
        lab = state.load(directory)
        if lab is None:
            return None
        _stop_and_remove(lab)
    with contextlib.suppress(OSError):
        (directory / ".lock").unlink()
        directory.rmdir()
    return lab


# -- faults, for tests: a host's processes, and a host started again ----------------------------


def processes_of_host(lab: LabState, name: str) -> list[Proc]:
    """Every live process of host ``name``: its recorded sshd (the listener) and every process
    in its mount namespace — the per-connection sshd processes and the commands they run."""
    return _victims([replace(lab, hosts=(lab.host(name),), acme=None)])


def restart_host(directory: Path | str, name: str, *, holding_addresses: bool = False) -> LabState:
    """Start host ``name`` again — after a test killed its sshd, say — over the same files,
    address, port and host key: whatever is left of it is stopped first, and its sshd starts
    in a new namespace (its ``/run`` is empty again; its private directories and overlays keep
    what was written). Returns the updated state (also saved in ``lab.json``).

    While the host is down, another lab starting may take its address: kill it and restart it
    inside ``addresses.machine_lock()``, passing ``holding_addresses=True``."""
    directory = Path(directory).absolute()
    held = contextlib.nullcontext() if holding_addresses else addresses.machine_lock()
    with _dir_lock(directory):
        lab = state.require(directory)
        old = lab.host(name)
        with held:
            survivors = procs.terminate(processes_of_host(lab, name))
            if survivors:
                pids = ", ".join(str(p.pid) for p in survivors)
                raise LabError(f"error: could not stop what is left of {name} (pids {pids})")
            if not addresses.is_free(old.address, old.port):
                raise LabError(
                    f"error: cannot start {name} again: {old.address}:{old.port} is taken"
                )
            plan = host.HostPlan(old.name, old.address, old.port, old.root, old.host_key)
            proc = procs.spawn(host.launch_argv(plan, prereq.tools().sshd), plan.log_path)
            try:
                [new] = _listening([replace(old, process=proc)])
            except LabError:
                procs.terminate([proc])
                raise
            lab = replace(lab, hosts=tuple(new if h.name == name else h for h in lab.hosts))
            state.save(lab)
    return lab
