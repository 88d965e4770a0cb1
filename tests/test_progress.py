"""Progress lines read right at any speed."""

from __future__ import annotations

import famevil.progress as progress
from famevil.progress import progress_bar, rate_text


def test_a_rate_below_one_a_second_reads_as_seconds_per_unit():
    assert rate_text(12.4, "updates") == "12 updates/s"
    assert rate_text(1.44, "updates") == "1.4 updates/s"  # not "1 updates/s"
    assert rate_text(0.25, "updates") == "4.0 s/update"
    assert rate_text(0.0, "updates") == ""


def test_slow_training_in_a_log_shows_seconds_per_update(monkeypatch, capsys):
    clock = iter(float(t) for t in range(0, 100, 3))  # three seconds an update
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with progress_bar("teach xmr", total=2, unit="updates") as advance:
        advance(1)
        advance(1)
    assert "teach xmr: 1/2 (50%), 3.0 s/update" in capsys.readouterr().err
