"""Test-only start-up hook for `datafold-notifier` subprocesses of tests/test_crash.py.

Python imports `sitecustomize` at start-up when this directory is on PYTHONPATH. With
CRASH_PAUSE_FLAG set, an audit hook holds the state write between fsync and rename, so that the
test can SIGKILL the daemon *during* the write, when the flag file names a run that the
temp file records as handled. It announces the pause as one JSON log line. Nothing in the
notifier is patched; without the variable this file does nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

_FLAG = os.environ.get("CRASH_PAUSE_FLAG")


def _records_flagged_run(tmp: str) -> bool:
    try:
        with open(_FLAG or "", encoding="utf-8") as flag:
            wanted = {str(run_id) for run_id in json.load(flag)}
        with open(tmp, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return False
    for monitor in state.get("monitors", {}).values():
        for run_id, run in monitor.get("runs", {}).items():
            if run_id in wanted and run.get("handled"):
                return True
    return False


def _pause_before_replace(event: str, args: tuple[Any, ...]) -> None:
    if event != "os.rename" or not str(args[0]).endswith(".tmp"):
        return
    if _records_flagged_run(str(args[0])):
        line = {"event": "crash_paused_before_replace", "tmp": str(args[0]), "level": "debug"}
        sys.stderr.write(json.dumps(line) + "\n")
        sys.stderr.flush()
        time.sleep(60)


if _FLAG:
    sys.addaudithook(_pause_before_replace)
