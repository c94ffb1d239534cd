"""The lab's nodes are PID namespaces with their own /proc: a node sees only what the lab started.

A containerd running on the test machine (or another lab's fake one) must not change what the
probe reads from /proc, and a fake runtime a test starts in a node must be seen there. These
check the lab itself with psutil (what the probe reads live environments with) and with the
probe's own verdict on a proxied node, where the route depends on the live environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab import Lab
from lab.netns import PREFIX, Namespace, ip

pytestmark = pytest.mark.lab

REGISTRY = "registry.lab.test"
CONTAINERD_UNIT = "lib/systemd/system/containerd.service"
UNIT = "[Unit]\nDescription=containerd\n[Service]\nExecStart=/usr/bin/containerd\n"
# Every process psutil sees in the node: pid, name, and the lab marker of its environment.
LIST_PROCESSES = """
import json, psutil
seen = []
for p in psutil.process_iter():
    try:
        marker = p.environ().get("LAB_MARKER", "")
    except psutil.Error:
        marker = "?"
    seen.append([p.pid, p.name(), marker])
print(json.dumps(seen))
"""


def fake_containerd(directory: Path) -> Path:
    """A copy of sleep named containerd (what the probe looks for), in a directory of its own."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    directory = Path(tempfile.mkdtemp(dir=directory))
    binary = directory / "containerd"
    shutil.copy(sleep, binary)
    return binary


@pytest.fixture
def host_containerd(tmp_path: Path, lab: Lab) -> Iterator[subprocess.Popen[bytes]]:
    """A process named containerd on the host (outside every node), with squid as its proxy."""
    binary = fake_containerd(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HTTPS_PROXY": lab.squid.url, "LAB_MARKER": "host"}
    process = subprocess.Popen([str(binary), "60"], env=env, start_new_session=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=5)


def node_processes(lab: Lab, node: str) -> list[tuple[int, str, str]]:
    done = lab.run_in([sys.executable, "-c", LIST_PROCESSES], node=node, timeout=20)
    assert done.returncode == 0, done.stderr
    return [tuple(row) for row in json.loads(done.stdout)]


def test_lab_node_sees_its_own_processes_only(
    lab: Lab, tmp_path: Path, host_containerd: subprocess.Popen[bytes]
) -> None:
    """psutil in a node lists its init, what the lab spawned there and itself; not the host's."""
    binary = fake_containerd(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "LAB_MARKER": "node"}
    spawned = lab.spawn_in("pidns-containerd", [str(binary), "60"], node="node", env=env)
    try:
        seen = node_processes(lab, "node")
        other = node_processes(lab, "proxied")
        status = Path(f"/proc/{spawned.popen.pid}/status").read_text(encoding="ascii")
    finally:
        spawned.stop()
    # NSpid: the process's pid in each PID namespace it is in, the host's first, the node's last.
    nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
    assert len(nspid) == 2, status
    assert host_containerd.poll() is None
    markers = {marker for _, _, marker in seen}
    assert "host" not in markers, seen
    assert (int(nspid[-1]), "containerd", "node") in seen, (nspid, seen)  # the node's numbering
    assert seen[0][0] == 1, seen  # the node's own init is its pid 1
    # The other node does not see this node's process either.
    assert "node" not in {marker for _, _, marker in other}, other
    assert "containerd" not in {name for _, name, _ in other}, other


def test_lab_spawned_pid_is_the_program_and_takes_signals(lab: Lab) -> None:
    """`spawn_in` holds the program's own host pid: its cmdline, and a SIGTERM that ends it."""
    process = lab.spawn_in("pidns-sleep", ["sleep", "60"], node="node")
    try:
        cmdline = Path(f"/proc/{process.popen.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[:2] == [b"sleep", b"60"], cmdline
        os.kill(process.popen.pid, signal.SIGTERM)
        assert process.popen.wait(timeout=5) == -signal.SIGTERM
    finally:
        process.stop()


def test_probe_ignores_a_containerd_outside_its_node(
    lab: Lab, tmp_path: Path, host_containerd: subprocess.Popen[bytes]
) -> None:
    """A containerd on the host with a proxy is not the node's: the probe goes direct (units say
    so); the same process started in the node is read, and its live proxy is used. In both the
    unit's ExecStart= names the stand-in's binary, so the probe would trust it if it saw it."""
    host_binary = str(host_containerd.args[0])  # Popen was given a list
    files = {CONTAINERD_UNIT: UNIT.replace("/usr/bin/containerd", host_binary)}
    run = lab.check([REGISTRY], lab.host_root(files=files), node="proxied")
    assert host_containerd.poll() is None
    assert run.registry(REGISTRY)["routes"][0]["route"] == "direct", run.describe()
    binary = fake_containerd(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HTTPS_PROXY": lab.squid.url}
    files = {CONTAINERD_UNIT: UNIT.replace("/usr/bin/containerd", str(binary))}
    inside = lab.spawn_in("pidns-live-containerd", [str(binary), "60"], node="proxied", env=env)
    try:
        run = lab.check([REGISTRY], lab.host_root(files=files), node="proxied")
    finally:
        inside.stop()
    assert run.registry(REGISTRY)["routes"][0]["route"] == "proxy", run.describe()


def test_lab_node_close_kills_everything_in_it(tmp_path: Path, lab: Lab) -> None:
    """Closing a node kills its init, what was spawned there and its orphans; the netns goes."""
    name = f"{PREFIX}{os.getpid()}-pidtest"
    ns = Namespace.create(name, pid=True)
    try:
        assert ns.init_pid is not None
        init_pid = ns.init_pid
        # sh starts a background sleep and exits at once: the sleep is the node init's orphan.
        done = ns.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"])
        orphan_in_node = int(done.stdout)
        spawned = ns.spawn("sleeper", ["sleep", "60"], tmp_path / "sleeper.log", listens=[])
        host_pids = [init_pid, spawned.popen.pid]
        # Find the orphan's host pid: the init's child whose pid in the node is the one printed.
        orphan = None
        for _ in range(100):
            for entry in Path("/proc").glob("[0-9]*/status"):
                try:
                    status = entry.read_text(encoding="ascii", errors="replace")
                except OSError:
                    continue
                fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
                nspid = fields.get("NSpid", "").split()
                if f"{init_pid}" == fields.get("PPid", "").strip() and nspid[-1:] == [
                    str(orphan_in_node)
                ]:
                    orphan = int(entry.parent.name)
            if orphan is not None:
                break
            time.sleep(0.05)
        assert orphan is not None, "the orphan was not adopted by the node's init"
        host_pids.append(orphan)
    finally:
        ns.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        alive = [pid for pid in host_pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        if not alive:
            break
        time.sleep(0.05)
    assert not alive, alive
    assert name not in ip("netns", "list")


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"
