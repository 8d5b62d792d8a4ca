"""An action under a steady load: threads that call a function without pause while it runs (the retrain
published under SDK load in the tests, the gate's timing measured under it in benchmarks/gate_noise.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def under_load(ask: Callable[[int], Any], action: Callable[[], Any], threads: int = 3) -> tuple[Any, list, list[str]]:
    """``action()`` while ``threads`` threads call ``ask(i)`` (``i`` counting up from ``5 * thread``) without
    pause, from half a second before it to half a second after: its result, the answers and the failures."""
    answers: list = []
    failures: list[str] = []
    stop = threading.Event()

    def loop(start: int) -> None:
        i = start
        while not stop.is_set():
            try:
                answers.append(ask(i))
            except Exception as err:
                failures.append(f"{type(err).__name__}: {err}")
            i += 1

    workers = [threading.Thread(target=loop, args=(n * 5,)) for n in range(threads)]
    for t in workers:
        t.start()
    try:
        time.sleep(0.5)
        result = action()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in workers:
            t.join()
    return result, answers, failures
