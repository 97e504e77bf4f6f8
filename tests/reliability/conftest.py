"""Reliability suite: counts what it survived and prints one summary line at the end.

Tests record what they tried with the `reliability` fixture (kept in the test report's
user_properties, so the numbers come from tests that really ran and passed):

    reliability.fault("slurmctld restarted")     one injected fault survived
    reliability.bad_input("two state markers")   one bad input refused cleanly
    reliability.outcome(lost=0, twice=0)         tasks lost / run twice, as measured
    reliability.sweep(swept=300, problems=2)     crash points of the crash-point sweep

The sweep's figures count even when its test fails: finding problems is what it is for.

The crash campaign (test_crash_campaign.py) prints its own figures; they are read from its
captured output.  Every passing test of tests/test_bad_input.py counts as one bad input.
"""
from __future__ import annotations

import re

import pytest

CAMPAIGN = "tests/reliability/test_crash_campaign.py::"
BAD_INPUT_SUITE = "tests/test_bad_input.py::"
_CAMPAIGN_LINE = re.compile(r"kills survived (\d+), tasks lost (\d+), tasks run twice (\d+)")


class Recorder:
    def __init__(self, node: pytest.Item):
        self.node = node

    def fault(self, name: str) -> None:
        self.node.user_properties.append(("reliability.fault", name))

    def bad_input(self, name: str) -> None:
        self.node.user_properties.append(("reliability.bad_input", name))

    def outcome(self, lost: int = 0, twice: int = 0) -> None:
        self.node.user_properties.append(("reliability.lost", lost))
        self.node.user_properties.append(("reliability.twice", twice))

    def sweep(self, swept: int, problems: int) -> None:
        self.node.user_properties.append(("reliability.swept", swept))
        self.node.user_properties.append(("reliability.sweep_problems", problems))


@pytest.fixture
def reliability(request) -> Recorder:
    return Recorder(request.node)


SWEEP_KINDS = ("swept", "sweep_problems")  # counted from failed tests too


def _figures(terminalreporter) -> dict[str, int] | None:
    figures = {"kills": 0, "faults": 0, "bad_inputs": 0, "lost": 0, "twice": 0, "swept": None, "sweep_problems": 0}
    seen = False
    passed = [r for r in terminalreporter.stats.get("passed", []) if getattr(r, "when", "") == "call"]
    failed = [r for r in terminalreporter.stats.get("failed", []) if getattr(r, "when", "") == "call"]
    for report in passed + failed:
        nodeid = report.nodeid
        ok = report in passed
        if ok and nodeid.startswith(BAD_INPUT_SUITE):
            figures["bad_inputs"] += 1
        if ok and nodeid.startswith(CAMPAIGN):
            seen = True
            match = _CAMPAIGN_LINE.search(report.capstdout or "")
            if match:
                figures["kills"] += int(match.group(1))
                figures["lost"] += int(match.group(2))
                figures["twice"] += int(match.group(3))
            else:  # run with -s: the test passed, so it survived all its kills with nothing lost
                from tests.reliability.test_crash_campaign import KILLS

                figures["kills"] += KILLS
        for name, value in report.user_properties:
            if not name.startswith("reliability."):
                continue
            kind = name.split(".", 1)[1]
            if not ok and kind not in SWEEP_KINDS:
                continue
            seen = True
            if kind == "fault":
                figures["faults"] += 1
            elif kind == "bad_input":
                figures["bad_inputs"] += 1
            elif kind in ("lost", "twice", *SWEEP_KINDS):
                figures[kind] = (figures[kind] or 0) + int(value)
    return figures if seen else None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures = _figures(terminalreporter)
    if figures is None:
        return
    failed = len(terminalreporter.stats.get("failed", []))
    terminalreporter.write_sep("=", "reliability")
    terminalreporter.write_line(
        f"reliability: kills survived {figures['kills']}, faults survived {figures['faults']}, "
        f"bad inputs tried {figures['bad_inputs']}, tasks lost {figures['lost']}, "
        f"tasks run twice {figures['twice']}"
        + (f", crash points swept {figures['swept']}, problems found {figures['sweep_problems']}"
           if figures["swept"] is not None else "")
        + (f" ({failed} test(s) FAILED)" if failed else "")
    )
