"""`bench --check`: a figure fails when worse than 0.7x its baseline, in its own direction."""

from __future__ import annotations

from pathlib import Path

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
