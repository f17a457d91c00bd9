"""The embedded default's clock (no Redis): a daemon thread in the web process runs the deadline tick
at the start of every minute, so `make run` needs no worker. With several web processes each ticks;
the effects' unique runs make that harmless."""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)
_started: threading.Event | None = None


def tick_once(app) -> list:
    """One tick in its own app context and session; failures are logged, never raised."""
    with app.app_context():
        from models import deadlines
        from models.base import db

        try:
            results = deadlines.tick(trigger="tick")
            for entry, run, error in results:
                if run is not None:
                    log.info("deadline %s of %s: %s", entry.effect.code, entry.cohort.name, run.counts)
                elif error:
                    log.warning("deadline %s of %s failed: %s", entry.effect.code, entry.cohort.name, error)
            return results
        except Exception:  # noqa: BLE001 - the next minute tries again
            log.exception("deadline tick failed")
            return []
        finally:
            db.session.remove()


def start(app, interval: float = 60.0) -> threading.Event | None:
    """Start ticking (once per process); returns the event that stops it, or None if already running."""
    global _started
    if _started is not None:
        return None
    stop = _started = threading.Event()

    def loop():
        while not stop.wait(interval - time.time() % interval):
            tick_once(app)

    threading.Thread(target=loop, name="cqe-ticker", daemon=True).start()
    return stop


def reset() -> None:
    """Stop the ticker of this process (tests)."""
    global _started
    if _started is not None:
        _started.set()
    _started = None
