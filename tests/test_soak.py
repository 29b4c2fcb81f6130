"""``bench/soak.py`` shortened: no leak over a few thousand requests."""

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).parent.parent / "bench" / "soak.py"


def test_short_soak_passes(tmp_path):
    report_path = tmp_path / "soak.json"
    run = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--requests",
            "3000",
            "--concurrency",
            "8",
            "--warmup",
            "1000",
            "--json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(report_path.read_text())
    assert report["passed"] is True
    assert report["errors"] == 0
    assert report["requests"] == 3000
    assert report["rss_growth_mib"] <= 10
    assert report["fds_end"] <= report["fds_before"]
    assert report["tmp_files_end"] == report["tmp_entries_after_stop"] == 0
    assert report["exit_status"] == 0
