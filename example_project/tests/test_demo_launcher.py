"""The demo launcher stops every process it started, grandchildren included, with no orphans."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from example_project.run_demo import ROOT, Child, Supervisor

DEADLINE = 30.0

# A child that starts a grandchild (both sleep), writes both pids to a file and waits; with
# "ignore" as second argument it ignores SIGTERM, as a hung process would.
FAMILY = textwrap.dedent(
    """
    import json, signal, subprocess, sys, time
    if sys.argv[2:] == ["ignore"]:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(sys.argv[1], "w") as out:
        json.dump([__import__("os").getpid(), grandchild.pid], out)
    time.sleep(600)
    """
)


def _gone(pid: int) -> bool:
    """True when the process no longer exists or is a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE:.0f} s: {what}")
        time.sleep(0.05)


_started: list[int] = []


def _pids(path: Path) -> list[int]:
    _eventually(lambda: path.exists() and path.stat().st_size > 0, f"{path.name} written")
    pids = json.loads(path.read_text())
    _started.extend(pids)
    return pids


@pytest.fixture(autouse=True)
def _no_leftovers():
    """Whatever a test leaves behind is killed (the grandchildren of a killed launcher too)."""
    yield
    while _started:
        pid = _started.pop()
        if not _gone(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def family(tmp_path: Path) -> Callable[..., Child]:
    def make(name: str, *extra: str) -> Child:
        return Child(name, [sys.executable, "-c", FAMILY, str(tmp_path / f"{name}.json"), *extra])

    return make


def test_stop_ends_each_child_and_its_grandchildren(family, tmp_path):
    supervisor = Supervisor()
    supervisor.start(family("web"))
    supervisor.start(family("worker"))
    pids = _pids(tmp_path / "web.json") + _pids(tmp_path / "worker.json")
    assert not any(_gone(pid) for pid in pids)

    supervisor.stop()

    assert [pid for pid in pids if not _gone(pid)] == []


def test_a_child_that_ignores_sigterm_is_killed_at_the_deadline(family, tmp_path):
    supervisor = Supervisor(stop_timeout=0.5)
    supervisor.start(family("stubborn", "ignore"))
    pids = _pids(tmp_path / "stubborn.json")

    supervisor.stop()

    assert supervisor.children[0].process.returncode == -signal.SIGKILL
    _eventually(lambda: all(_gone(pid) for pid in pids), "child and grandchild killed")


def test_wait_reports_the_child_that_exited_on_its_own():
    supervisor = Supervisor()
    supervisor.start(Child("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"]))
    quitter = supervisor.start(Child("quitter", [sys.executable, "-c", "raise SystemExit(3)"]))

    ended = supervisor.wait(poll=0.05)
    supervisor.stop()

    assert ended is quitter
    assert quitter.process.returncode == 3
    assert all(not child.group_alive() for child in supervisor.children)


LAUNCHER = textwrap.dedent(
    """
    import sys
    from example_project.run_demo import Child, Supervisor
    supervisor = Supervisor()
    supervisor.install_signal_handlers()
    for name in ("web", "worker"):
        command = [sys.executable, "-c", sys.argv[1], f"{sys.argv[2]}/{name}.json"]
        supervisor.start(Child(name, command))
    print("ready", flush=True)
    supervisor.wait()
    supervisor.stop()
    print("stopped", supervisor.signal_received, flush=True)
    """
)


def _launcher(tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, FAMILY, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_to_the_launcher_stops_everything(tmp_path, signum):
    launcher = _launcher(tmp_path)
    try:
        assert launcher.stdout.readline().strip() == "ready"
        pids = _pids(tmp_path / "web.json") + _pids(tmp_path / "worker.json")

        launcher.send_signal(signum)
        out, _ = launcher.communicate(timeout=DEADLINE)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()

    assert launcher.returncode == 0
    assert out.split() == ["stopped", str(int(signum))]
    assert [pid for pid in pids if not _gone(pid)] == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_get_sigterm_when_the_launcher_is_killed(tmp_path):
    launcher = _launcher(tmp_path)
    try:
        assert launcher.stdout.readline().strip() == "ready"
        web, _ = _pids(tmp_path / "web.json")
        worker, _ = _pids(tmp_path / "worker.json")

        launcher.kill()
        launcher.wait()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()

    # The launcher could not clean up, yet its direct children were told to end.
    _eventually(lambda: _gone(web) and _gone(worker), "the children ended after SIGKILL")
