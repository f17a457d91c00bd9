"""The data package for the city data centre (models/datapackage.py) built by an RQ job with a progress bar, or in
the request when Redis does not answer (the embedded default)."""
from __future__ import annotations

from jobs import FAILURE_TTL, RESULT_TTL, app_context, job, live_queue, progress
from models.base import db
from models.datapackage import BUILD_LIMIT, DataPackage, build_package

TIMEOUT = BUILD_LIMIT  # a school of 1,000 students × 23 items of ~1 MB: some 23 GB read and written


@job(timeout=TIMEOUT)
@app_context
def build_data_package(package_id: int) -> dict:
    """Build one package; a failure is the package's state ("failed" with the reason), not the job's."""
    try:
        package = build_package(package_id, report=progress)
        return {"package_id": package.id, "state": package.state}
    finally:
        db.session.rollback()


def start(package: DataPackage, user_id: int) -> str | None:
    """Build ``package`` on the queue (returns the job id, which the page polls) or, when Redis does not answer,
    now in this request (returns None)."""
    q = live_queue()
    if q is None:
        build_package(package.id)
        return None
    found = q.enqueue(build_data_package, package.id, job_id=package.job_id, job_timeout=TIMEOUT,
                      result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
                      meta={"user_id": user_id, "progress": None})
    return found.id
