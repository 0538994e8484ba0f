"""`bench --check`: a figure fails when worse than 0.7x its baseline, in its own direction."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from bench.figures import HIGHER, LOWER, Figures, check, save_baseline


def test_medians_are_compared_with_the_baseline_each_in_its_direction(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    before = Figures()
    before.add("replies/s", 100, "/s", HIGHER)
    before.add("ack p99", 10, "ms", LOWER)
    before.add("only in the baseline", 1, "ms", LOWER)
    save_baseline(before, baseline)

    now = Figures()
    for value in (90, 20, 75):  # median 75: above 0.7x
        now.add("replies/s", value, "/s", HIGHER)
    now.add("ack p99", 14, "ms", LOWER)  # under 10 / 0.7
    lines, ok = check(now, baseline)
    assert ok, lines
    assert any("not measured" in line and "only in the baseline" in line for line in lines)
    assert "(min 20.0 - max 90.0, 3 runs)" in now.lines()[0]

    slower = Figures()
    slower.add("replies/s", 69, "/s", HIGHER)
    slower.add("ack p99", 14.4, "ms", LOWER)  # above 10 / 0.7
    lines, ok = check(slower, baseline)
    assert not ok
    assert sorted(line.split()[1] for line in lines if line.split()[0] == "WORSE") == ["ack", "replies/s:"]


def test_check_without_a_baseline_fails_and_says_how_to_make_one(tmp_path: Path) -> None:
    lines, ok = check(Figures(), tmp_path / "missing.json")
    assert not ok and "--save-baseline" in lines[0]


def test_a_mixed_run_says_where_the_cores_went() -> None:
    """bench.mixed: each part's CPU per inbound message, Waypost's without the fake Graph API (Meta's
    stand-in), and the cores busy over the run: a slow minute of the machine shows as latency that
    grew while the CPU per message did not."""
    from bench.figures import DriverCost
    from bench.mixed import MixedRun

    cost = DriverCost()
    cost.cpu, cost.wall = 2.0, 20.0
    run = MixedRun(
        rate=80,
        seconds=20,
        acks={"message": [5.0, 7.0], "status": [4.0, 6.0]},
        errors=collections.Counter(),
        lags=[1.0],
        posted={"wamid.a": 0.0, "wamid.b": 0.0},
        replies=collections.Counter({"wamid.a": 1, "wamid.b": 1}),
        reply_ms=[10.0, 12.0],
        status_rate=240,
        cost=cost,
        cpu={"web": 0.010, "worker": 0.008, "postgres": 0.016, "fake graph": 0.002},
        cpu_wall=0.025,
    )
    assert run.cpu_per_message() == pytest.approx({"fake graph": 1.0, "postgres": 8.0, "web": 5.0, "worker": 4.0})
    assert run.waypost_cpu_ms() == pytest.approx(17.0)
    line = run.lines()[-1]
    assert "postgres 8.00 ms" in line and "Waypost 17.00 ms" in line and "stack 1.44 + driver 0.10" in line
    assert run.figures()["mixed Waypost CPU per message"].values == [pytest.approx(17.0)]

    # --floor: the floor's processes answered, beside an idle Waypost left out of the sum
    run.cpu = {"web": 0.001, "worker": 0.001, "floor": 0.006, "postgres": 0.010, "fake graph": 0.002}
    assert run.served() == "floor" and run.waypost_cpu_ms() == pytest.approx(8.0)
    assert run.figures()["mixed floor CPU per message"].values == [pytest.approx(8.0)]
