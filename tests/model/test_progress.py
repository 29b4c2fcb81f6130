import json

import pytest

from deepaas.model import progress


def test_report_outside_a_training_does_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    progress.report(0.3, "step")
    assert list(tmp_path.iterdir()) == []


def test_report_writes_the_latest_state(monkeypatch, tmp_path):
    target = tmp_path / "p.json"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(target))
    progress.report(0.1, "first")
    progress.report(0.2, "second", loss=3)
    state = json.loads(target.read_text())
    assert (state["fraction"], state["message"], state["metrics"]) == (
        0.2,
        "second",
        {"loss": 3.0},
    )
    assert progress.read(str(target))["message"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        ((1.5,), {}, "fraction"),
        ((-0.1,), {}, "fraction"),
        ((), {"loss": float("nan")}, "loss"),
        ((), {"flag": True}, "flag"),
    ],
)
def test_invalid_reports_are_rejected(args, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        progress.report(*args, **kwargs)


def test_read_of_a_missing_or_broken_file(tmp_path):
    assert progress.read(str(tmp_path / "none.json")) is None
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert progress.read(str(broken)) is None
