"""Fixtures for drover's end-to-end tests.

drover is found through $DROVER_BIN, else zig-out/bin/drover (built once per
session with `zig build` when missing). Every process a test starts is
killed at its end, pass or fail, and when a test fails the stderr of every
drover it ran is attached to its report. Each test runs under a watchdog
(SIGALRM): 180 s unless marked @pytest.mark.time_limit(seconds).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from drover_e2e import Drover, find_or_build_drover  # noqa: E402

DEFAULT_TIME_LIMIT = 180


def pytest_configure(config):
    config.addinivalue_line("markers", "time_limit(seconds): fail the test past this many seconds")
    config.addinivalue_line("markers", "sanitizer: short tests that also run against the ASan + UBSan build")
    config.addinivalue_line("markers", "slow: tests of ten minutes or more; the full suite runs them, "
                            "-m 'not slow' leaves them out")


@pytest.fixture(scope="session")
def drover_bin() -> str:
    path, why = find_or_build_drover()
    if not path:
        pytest.fail("cannot find or build drover: " + why, pytrace=False)
    return path


class _Procs:
    """Every process a test starts, for cleanup and for failure reports."""

    def __init__(self):
        self.drovers: list[Drover] = []
        self.others: list[subprocess.Popen] = []

    def cleanup(self) -> None:
        for d in self.drovers:
            d.cleanup()
        for p in self.others:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass


@pytest.fixture
def procs(request):
    ps = _Procs()
    request.node._e2e_procs = ps
    yield ps
    ps.cleanup()


@pytest.fixture
def start_drover(drover_bin, procs, tmp_path):
    """start_drover(config_path, name=..., args=..., env=...) -> a started Drover
    (not yet ready: call .wait_ready())."""

    def start(config: str, *, name: str = "drover", args=(), env=None, start: bool = True) -> Drover:
        d = Drover(drover_bin, config, str(tmp_path / "logs"), name=name, args=args, env=env)
        procs.drovers.append(d)
        if start:
            d.start()
        return d

    return start


@pytest.fixture
def track(procs):
    """track(popen) registers a process for cleanup."""

    def add(p: subprocess.Popen) -> subprocess.Popen:
        procs.others.append(p)
        return p

    return add


class _TimeLimit(Exception):
    pass


@pytest.fixture(autouse=True)
def _watchdog(request):
    marker = request.node.get_closest_marker("time_limit")
    limit = marker.args[0] if marker else DEFAULT_TIME_LIMIT

    def on_alarm(signum, frame):
        raise _TimeLimit("test exceeded its time limit of %ss" % limit)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def _tail(text: str, max_lines: int = 150, max_chars: int = 20000) -> str:
    lines = text.splitlines()[-max_lines:]
    return "\n".join(lines)[-max_chars:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the log tails of every drover it
    ran, then of every server whose fixture asked for it
    (drover_e2e.report_logs_on_failure)."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    ps = getattr(item, "_e2e_procs", None)
    for d in ps.drovers if ps else []:
        for i, path in enumerate(d.logs):
            rep.sections.append(("drover %s run %d stderr (%s)" % (d.name, i + 1, path),
                                 _tail(d.log_text(i))))
    for sections in getattr(item, "_e2e_log_sections", []):
        for title, text in sections():
            rep.sections.append((title, _tail(text, 80, 12000)))
