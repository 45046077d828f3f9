#!/usr/bin/env python3
"""Loopback ports for infra/services.sh and infra/processes.sh (standard library only).

  netcheck.py free PORT          exit 0 when nothing listens on 127.0.0.1:PORT
  netcheck.py pick [--label L] [--avoid P,...] [PORT]
                                 print PORT while it is free, else a new free port;
                                 a replaced port is said on stderr, with who holds it
  netcheck.py holder PORT        the processes listening on PORT, one "pid command" a line
  netcheck.py wait --port P (--pid N | --pidfile F) [--url U] [--auth-env VAR] [--timeout S]
                                 until PORT is listened on by process N (or one of its
                                 children) and U answers; exit 1 when N exits, when another
                                 process holds the port, or at the timeout

An answer on a port proves only that something listens there. A service that
lost the port to another process still sees that process answer its probe, so
`wait` checks whose socket it is, from /proc (Linux).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

LISTEN = "0A"
# Addresses whose listeners take 127.0.0.1:PORT: loopback and the wildcards.
LOOPBACK_OR_ANY = {
    "0100007F",
    "00000000",
    "00000000000000000000000000000000",
    "0000000000000000FFFF00000100007F",
}
# Seconds a foreign listener may hold the port while the process is starting:
# the previous holder may still be closing it.
FOREIGN_GRACE_S = 5.0


def port_free(port: int) -> bool:
    # SO_REUSEADDR as the servers set it themselves: connections of a stopped
    # server lingering in TIME_WAIT do not make its port look taken; a listener does.
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def new_port(avoid: set[int]) -> int:
    """A free port below the kernel's ephemeral range: a port kept for years is
    never taken by the source port of some outgoing connection there."""
    low = _ephemeral_range()[0]
    if low > 12000:
        for _ in range(200):
            port = random.randint(10000, low - 1)
            if port not in avoid and port_free(port):
                return port
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in avoid:
            return port


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == LISTEN and int(hex_port, 16) == port and address in LOOPBACK_OR_ANY:
                inodes.add(fields[9])
    return inodes


def holders(port: int) -> dict[int, str]:
    """Processes with a listening socket on PORT (those whose descriptors we may read)."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found: dict[int, str] = {}
    if not wanted:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    found[int(entry.name)] = _command(int(entry.name))
                    break
        except OSError:
            continue
    return found


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120] or "?"


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name (in parentheses) may hold spaces: fields start after its ")".
    return int(stat.rsplit(")", 1)[1].split()[1])


def in_tree(pid: int, root: int) -> bool:
    """Whether PID is ROOT or one of its descendants (gunicorn's workers share its socket)."""
    for _ in range(64):
        if pid == root:
            return True
        if pid <= 1:
            return False
        pid = _parent(pid)
    return False


def describe(port: int) -> str:
    found = holders(port)
    if not found:
        return "by a process of another user" if _listening_inodes(port) else ""
    return "by " + ", ".join(f"pid {pid} ({command})" for pid, command in sorted(found.items()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its parent has not reaped it yet.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _read_pid(args: argparse.Namespace) -> int | None:
    if args.pid:
        return int(args.pid)
    try:
        return int(Path(args.pidfile).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # not written yet: a daemon writes it once it has forked


def _answers(url: str, auth_env: str | None) -> bool:
    headers = {}
    if auth_env:
        # The credentials come from the environment: arguments show in `ps`.
        token = base64.b64encode(os.environ.get(auth_env, "").encode()).decode()
        headers["Authorization"] = "Basic " + token
    try:
        urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2).close()  # noqa: S310
    except (OSError, urllib.error.URLError, ValueError):
        return False
    return True


def wait(args: argparse.Namespace) -> int:
    label, port = args.label, args.port
    deadline = time.monotonic() + args.timeout
    foreign_since: float | None = None
    reason = "it did not listen"
    while True:
        pid = _read_pid(args)
        if pid is not None and not _alive(pid):
            print(f"{label}: pid {pid} exited before it answered on port {port}", file=sys.stderr)
            return 1
        found = holders(port)
        if pid is not None and any(in_tree(holder, pid) for holder in found):
            foreign_since = None
            if args.url is None or _answers(args.url, args.auth_env):
                return 0
            reason = f"{args.url} did not answer"
        elif _listening_inodes(port):
            # Someone else listens there: the process cannot bind, and a probe
            # would be answered by that other process.
            reason = f"port {port} is held {describe(port)}" + (f", not by pid {pid}" if pid else "")
            foreign_since = foreign_since or time.monotonic()
            if time.monotonic() - foreign_since > FOREIGN_GRACE_S:
                print(f"{label}: {reason}", file=sys.stderr)
                return 1
        else:
            foreign_since = None
        if time.monotonic() > deadline:
            print(f"{label}: not ready after {args.timeout:g} s: {reason}", file=sys.stderr)
            return 1
        time.sleep(0.25)


def pick(args: argparse.Namespace) -> int:
    avoid = {int(p) for p in args.avoid.split(",") if p}
    if args.port and args.port not in avoid and port_free(args.port):
        print(args.port)
        return 0
    port = new_port(avoid | ({args.port} if args.port else set()))
    if args.port:
        held = describe(args.port) if args.port not in avoid else "by another service here"
        taken = f"port {args.port} is taken" + (f" {held}" if held else "")
        print(f"{args.label}: {taken}, using {port}", file=sys.stderr)
    print(port)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    free = commands.add_parser("free")
    free.add_argument("port", type=int)
    chooser = commands.add_parser("pick")
    chooser.add_argument("port", type=int, nargs="?")
    chooser.add_argument("--label", default="port")
    chooser.add_argument("--avoid", default="")
    holder = commands.add_parser("holder")
    holder.add_argument("port", type=int)
    waiter = commands.add_parser("wait")
    waiter.add_argument("--port", type=int, required=True)
    who = waiter.add_mutually_exclusive_group(required=True)
    who.add_argument("--pid", type=int)
    who.add_argument("--pidfile")
    waiter.add_argument("--url")
    waiter.add_argument("--auth-env")
    waiter.add_argument("--timeout", type=float, default=60)
    waiter.add_argument("--label", default="process")
    args = parser.parse_args()
    if args.command == "free":
        return 0 if port_free(args.port) else 1
    if args.command == "pick":
        return pick(args)
    if args.command == "holder":
        for pid, command in sorted(holders(args.port).items()):
            print(pid, command)
        return 0
    return wait(args)


if __name__ == "__main__":
    sys.exit(main())
