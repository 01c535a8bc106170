"""The namespace launcher of one lab host: run as a script, it becomes that host's sshd.

``python -I -S nsinit.py SPEC_JSON`` (SPEC_JSON is the JSON text itself, not a file name):

1. ``unshare(CLONE_NEWNS | CLONE_NEWUTS)`` and make every mount private (nothing propagates
   back to the machine);
2. set the hostname to ``spec["hostname"]``;
3. perform ``spec["mounts"]`` in order, each one of
   ``{"kind": "overlay", "target": T, "lower": L, "upper": U, "work": W}``,
   ``{"kind": "bind", "source": S, "target": T}`` or
   ``{"kind": "tmpfs", "target": T, "mode": "0755"}``;
4. create ``spec["mkdirs"]`` (``[path, mode]`` pairs) inside the new mounts;
5. ``execv(spec["argv"][0], spec["argv"])`` — the host's sshd keeps this process's PID.

It imports only the standard library and touches nothing outside its own new namespaces. Any
failure is printed to stderr (the host's log file) and exits with status 111.

The mount namespace lives as long as any process in it: when the last one exits, the kernel
drops every mount made here, so nothing has to be unmounted by hand.
"""

import ctypes
import json
import os
import socket
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source, target, fstype, flags, data) -> None:
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    result = _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data))
    _check(result, f"mount {fstype or 'bind'} {source} on {target}")


def _overlay_option(path: str) -> str:
    # overlayfs splits its options on "," and lowerdir on ":"; escape both.
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def apply(spec: dict) -> None:
    """Enter new namespaces and build the host's file system view from ``spec``."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    socket.sethostname(spec["hostname"])
    for m in spec["mounts"]:
        kind, target = m["kind"], m["target"]
        if kind == "overlay":
            data = ",".join(
                f"{key}dir={_overlay_option(m[key])}" for key in ("lower", "upper", "work")
            )
            _mount("overlay", target, "overlay", 0, data)
        elif kind == "bind":
            _mount(m["source"], target, None, MS_BIND | MS_REC, None)
        elif kind == "tmpfs":
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={m['mode']}")
        else:
            raise ValueError(f"unknown mount kind {kind!r}")
    for path, mode in spec.get("mkdirs", ()):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, int(mode, 8))


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    try:
        apply(spec)
        os.chdir("/")
        os.execv(spec["argv"][0], spec["argv"])
    except Exception as error:  # report and fail: the parent shows this log
        print(f"fedi-run lab host {spec.get('hostname')}: {error}", file=sys.stderr, flush=True)
        os._exit(111)


if __name__ == "__main__":
    main(sys.argv)
