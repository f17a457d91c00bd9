"""The embedded default's clock (no Redis): a daemon thread in the web process runs the deadline tick
at the start of every minute, so `make run` needs no worker. With several web processes each ticks;
the effects' unique runs make that harmless."""
from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)
_started = False


def start(app, interval: float = 60.0) -> threading.Thread | None:
    global _started
    if _started:
        return None
    _started = True

    def loop():
        while True:
            time.sleep(interval - time.time() % interval)
            try:
                with app.app_context():
                    from models import deadlines
                    from models.base import db

                    try:
                        for entry, run, error in deadlines.tick(trigger="tick"):
                            if run is not None:
                                log.info("deadline %s of %s: %s", entry.effect.code, entry.cohort.name, run.counts)
                            elif error:
                                log.warning("deadline %s of %s failed: %s", entry.effect.code, entry.cohort.name, error)
                    finally:
                        db.session.remove()
            except Exception:  # noqa: BLE001 - the next minute tries again
                log.exception("deadline tick failed")

    thread = threading.Thread(target=loop, name="cqe-ticker", daemon=True)
    thread.start()
    return thread
