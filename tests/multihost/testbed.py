"""Several hosts on one machine: network namespaces on a private bridge.

Each host is a network namespace with one veth interface on a private
/24; the bridge lives in a namespace of its own, so the machine's own
network is never touched. Processes started in a host are tracked and
killed (with everything still in its namespace) when the bed is torn down.

Run by hand (as root) to get a shell-ready bed:
    python -m tests.multihost.testbed up a b c     # prints the hosts and addresses
    python -m tests.multihost.testbed down ID
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "cpmh"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def netns_available() -> str | None:
    """None when this process may create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}probe{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"`ip netns add` failed: {getattr(exc, 'stderr', exc)}"
    ip("netns", "del", probe)
    return None


@dataclass
class Host:
    name: str
    netns: str
    address: str
    switch_port: str  # the veth end on the bridge: down = this host is cut off

    def command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class NetnsBed:
    """`hosts` on 10.<n>.<m>.0/24 behind one bridge; `cut`/`heal` a host's link."""

    names: Sequence[str]
    bed_id: str = field(default_factory=lambda: f"{random.randrange(16**4):04x}")
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{PREFIX}{self.bed_id}sw"

    def up(self) -> NetnsBed:
        subnet = f"10.{random.randrange(200, 250)}.{random.randrange(1, 250)}"
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for index, name in enumerate(self.names):
            netns = f"{PREFIX}{self.bed_id}{name}"
            inside, port = f"{PREFIX}{self.bed_id}{index}h", f"{PREFIX}{self.bed_id}{index}s"
            ip("netns", "add", netns)
            ip("link", "add", inside, "type", "veth", "peer", "name", port)
            ip("link", "set", inside, "netns", netns)
            ip("link", "set", port, "netns", self.switch)
            ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
            address = f"{subnet}.{index + 2}"
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", netns, "link", "set", inside, "name", "eth0")
            ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", netns, "link", "set", "eth0", "up")
            self.hosts[name] = Host(name, netns, address, port)
        return self

    def cut(self, name: str) -> None:
        """Pull the host's cable: its processes live on, unreachable."""
        ip("-n", self.switch, "link", "set", self.hosts[name].switch_port, "down")

    def heal(self, name: str) -> None:
        ip("-n", self.switch, "link", "set", self.hosts[name].switch_port, "up")

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        **popen: object,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside host `name`, in its own session (killed at teardown)."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            self.hosts[name].command(argv),
            env={**os.environ, **(env or {})},
            stdout=popen.pop("stdout", out),
            stderr=popen.pop("stderr", subprocess.STDOUT),
            start_new_session=True,
            **popen,  # type: ignore[call-overload]
        )
        self.processes.append(process)
        return process

    def pids_in(self, name: str) -> list[int]:
        listed = subprocess.run(
            ["ip", "netns", "pids", self.hosts[name].netns], capture_output=True, text=True
        ).stdout
        return [int(p) for p in listed.split()]

    def down(self) -> None:
        """Kill every process in the bed's namespaces, then delete the namespaces."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(0.2)
        for name in self.hosts:
            for pid in self.pids_in(name):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.netns], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.switch], capture_output=True)

    def __enter__(self) -> NetnsBed:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *_: object) -> None:
        self.down()


def leftover_namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.startswith(PREFIX)]


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "up":
        bed = NetnsBed(argv[1:]).up()
        print(f"bed {bed.bed_id}")
        for host in bed.hosts.values():
            print(f"  {host.name}: ip netns exec {host.netns} ...   address {host.address}")
        return 0
    if len(argv) == 2 and argv[0] == "down":
        for netns in leftover_namespaces():
            if netns.startswith(f"{PREFIX}{argv[1]}"):
                for pid in subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                          text=True).stdout.split():
                    os.kill(int(pid), signal.SIGKILL)
                subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
