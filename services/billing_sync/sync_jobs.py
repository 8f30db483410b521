"""The sync jobs' rows: queue requests, claims, progress, completion, queries. Service layer, no nameko.

The billing_sync RPC service creates jobs (`request_*`) and puts their ids on the work queue
after the commit; the sync workers (`worker.py`) claim them, report progress and finish them
here. Every change of a job locks its row, so concurrent workers (a redelivery racing a
slow worker, children finishing together) serialise on it. Rules live in `jobs.py`.
"""
import logging
import uuid as uuid_lib
from dataclasses import dataclass

from sqlalchemy import func, select, update

from roster.database import insert_ignore
from roster.errors import NotFound, invalid
from roster.timestamps import render, utcnow
from roster.uow import UnitOfWork
from services.billing_sync import jobs, store
from services.billing_sync.models import DataSource, SyncJob

log = logging.getLogger(__name__)


class JobStopped(Exception):
    """The job a worker runs was cancelled (or its data source deleted) meanwhile: stop its work."""


@dataclass(frozen=True)
class Ticket:
    """What a worker needs to run a claimed job."""

    uuid: str
    kind: str
    data_source_uuid: str
    system: str
    base_url: str | None
    api_key: str | None
    customer_external_id: str | None
    file_path: str | None
    cursor: str | None
    attempts: int
    resumed: bool  # an earlier attempt started this job

    def __repr__(self) -> str:  # never show the key in a log or traceback
        return f"Ticket({self.kind} {self.uuid} of {self.data_source_uuid}, attempt {self.attempts})"


def dump_job(job: SyncJob, source_uuid: str, parent_uuid: str | None = None) -> dict:
    return {
        "id": job.uuid,
        "job_id": job.uuid,
        "kind": job.kind,
        "data_source_uuid": source_uuid,
        "parent_id": parent_uuid,
        "customer_external_id": job.customer_external_id,
        "customer_uuid": job.customer_uuid,
        "state": job.state,
        "counts": {"processed": job.processed, "failed": job.failed, "total": job.total},
        "errors": list(job.errors or []),
        "reason": job.reason,
        "attempts": job.attempts,
        "created_at": render(job.created_at),
        "started_at": render(job.started_at) if job.started_at else None,
        "finished_at": render(job.finished_at) if job.finished_at else None,
        "progress_at": render(job.progress_at) if job.progress_at else None,
    }


def _new_job(session, kind: str, source: DataSource, **fields) -> SyncJob:
    job = SyncJob(uuid=str(uuid_lib.uuid4()), kind=kind, data_source_id=source.id, state=jobs.PENDING,
                  processed=0, failed=0, errors=[], attempts=0, listed=False, created_at=utcnow(), **fields)
    session.add(job)
    session.flush()
    return job


def _connector_source(session, uuid: str, param: str) -> DataSource:
    try:
        source = store.data_source(session, uuid)
    except NotFound:
        raise invalid(param, f"no data source {uuid} exists")
    if source.system not in jobs.CONNECTOR_SYSTEMS:
        raise invalid(param, f"data source {uuid} is an {source.system} source: only a billing system "
                             f"connector ({', '.join(sorted(jobs.CONNECTOR_SYSTEMS))}) can be synced")
    return source


# ---- requests (the RPC service) ---------------------------------------------------------------


def request_source_sync(uow: UnitOfWork, data_source_uuid: str) -> dict:
    """Create a pending full sync of a connector source; return the job."""
    with uow.write() as tx:
        try:
            source = store.data_source(tx.session, data_source_uuid)
        except NotFound:
            raise NotFound(f"Data source {data_source_uuid} not found", param="uuid")
        if source.system not in jobs.CONNECTOR_SYSTEMS:
            raise invalid("uuid", f"an {source.system} data source has no billing system to sync from")
        return dump_job(_new_job(tx.session, jobs.SOURCE_SYNC, source), source.uuid)


def request_customer_resync(uow: UnitOfWork, customer: dict) -> dict:
    """Create a pending re-sync of a customer (a record as the customers service answers it)
    from its connector source; 422 when the customer comes from none."""
    pairs = [(customer.get("data_source_uuid"), customer.get("external_id"))]
    sources, external_ids = customer.get("data_source_uuids") or [], customer.get("external_ids") or []
    if len(sources) == len(external_ids):  # one id per source: the pairs line up (merged customers)
        pairs += list(zip(sources, external_ids))
    with uow.write() as tx:
        sources = store.data_sources_by_uuid(tx.session, [uuid for uuid, _ in pairs if uuid])
        for source_uuid, external_id in pairs:
            source = sources.get(source_uuid)
            if source is not None and source.system in jobs.CONNECTOR_SYSTEMS and external_id:
                job = _new_job(tx.session, jobs.CUSTOMER_RESYNC, source, customer_external_id=external_id,
                               customer_uuid=customer.get("uuid"))
                return dump_job(job, source.uuid)
        raise invalid("uuid", "the customer does not come from a billing system connector: nothing to re-sync")


def request_csv_import(uow: UnitOfWork, data_source_uuid: str, file_path: str) -> dict:
    """Create a pending import of an uploaded CSV file into a data source; return the job."""
    with uow.write() as tx:
        try:
            source = store.data_source(tx.session, data_source_uuid)
        except NotFound:
            raise NotFound(f"Data source {data_source_uuid} not found", param="uuid")
        return dump_job(_new_job(tx.session, jobs.CSV_IMPORT, source, file_path=file_path), source.uuid)


def fail_unqueued(uow: UnitOfWork, job_uuid: str, reason: str) -> None:
    """Mark a job that could not be put on the queue as failed."""
    finish(uow, job_uuid, reason=f"could not be queued: {reason}")


# ---- queries ---------------------------------------------------------------------------------


def get_job(uow: UnitOfWork, uuid: str) -> dict:
    """Return one job; 404 if there is none."""
    with uow.read() as session:
        job = session.scalars(select(SyncJob).where(SyncJob.uuid == uuid)).first()
        if job is None:
            raise NotFound(f"Sync job {uuid} not found", param="id")
        return _dumped(session, job)


def cancel(uow: UnitOfWork, uuid: str) -> dict:
    """Cancel a pending or running job and its unfinished children (a source sync's customers);
    return it. A worker running it stops at its next progress report; 422 if it has ended."""
    with uow.write() as tx:
        found = tx.session.scalar(select(SyncJob.id).where(SyncJob.uuid == uuid))
        if found is None:
            raise NotFound(f"Sync job {uuid} not found", param="id")
        # the children's rows before the job's own: a finishing child locks itself, then its parent
        children = select(SyncJob.id).where(SyncJob.parent_id == found, SyncJob.state.not_in(jobs.FINISHED))
        tx.session.execute(children.order_by(SyncJob.id).with_for_update())
        job = _locked(tx.session, uuid)
        if job is None:  # its data source was deleted meanwhile
            raise NotFound(f"Sync job {uuid} not found", param="id")
        if job.state in jobs.FINISHED:
            raise invalid("id", f"the job has ended ({job.state}): there is nothing to cancel")
        now = utcnow()
        tx.session.execute(update(SyncJob).where(SyncJob.id.in_(children.scalar_subquery()))
                           .values(state=jobs.CANCELLED, reason=jobs.CANCELLED_REASON, finished_at=now,
                                   progress_at=now).execution_options(synchronize_session=False))
        _close(tx, job, jobs.CANCELLED_REASON, state=jobs.CANCELLED)
        if job.parent_id is not None:
            _child_finished(tx, job)
        return _dumped(tx.session, job)


def _dumped(session, job: SyncJob) -> dict:
    """`dump_job` of a stored job, with its data source's and parent's uuids."""
    parent = session.get(SyncJob, job.parent_id) if job.parent_id else None
    return dump_job(job, session.get(DataSource, job.data_source_id).uuid, parent.uuid if parent else None)


def job_stats(uow: UnitOfWork) -> dict:
    """Return the backlog: jobs per state and the age of the oldest pending one."""
    with uow.read() as session:
        rows = session.execute(select(SyncJob.state, func.count(), func.min(SyncJob.created_at))
                               .group_by(SyncJob.state)).all()
    return jobs.stats([tuple(row) for row in rows], utcnow())


def processing_status(session, source_ids: list[int]) -> dict[int, dict]:
    """Return {data source id: {processed, pending, failed}} from the live state of its work jobs."""
    found = {source_id: [] for source_id in source_ids}
    if source_ids:
        rows = session.execute(select(SyncJob.data_source_id, SyncJob.state, SyncJob.processed, SyncJob.failed,
                                      SyncJob.total)
                               .where(SyncJob.data_source_id.in_(source_ids), SyncJob.kind != jobs.SOURCE_SYNC))
        for source_id, *row in rows:
            found[source_id].append(tuple(row))
    return {source_id: jobs.processing_status(rows) for source_id, rows in found.items()}


# ---- the workers ---------------------------------------------------------------------------


def _locked(session, uuid: str) -> SyncJob | None:
    return session.scalars(select(SyncJob).where(SyncJob.uuid == uuid).with_for_update()
                           .execution_options(populate_existing=True)).first()


def claim(uow: UnitOfWork, uuid: str, *, taking_over: bool) -> Ticket | None:
    """Mark the job running for this worker and return what it needs; None when it must not
    run (unknown, finished, or held by another worker: `jobs.claim_decision`)."""
    with uow.write() as tx:
        job = _locked(tx.session, uuid)
        if job is None or jobs.claim_decision(job.state, redelivered=taking_over) != jobs.RUN:
            return None
        resumed = job.state == jobs.RUNNING
        job.state = jobs.RUNNING
        job.attempts += 1
        job.started_at = job.started_at or utcnow()
        job.progress_at = utcnow()
        source = tx.session.get(DataSource, job.data_source_id)
        return Ticket(uuid=job.uuid, kind=job.kind, data_source_uuid=source.uuid, system=source.system,
                      base_url=source.base_url, api_key=source.api_key,
                      customer_external_id=job.customer_external_id, file_path=job.file_path, cursor=job.cursor,
                      attempts=job.attempts, resumed=resumed)


def report(uow: UnitOfWork, uuid: str, *, processed: int = 0, failed: int = 0, errors=(), total: int | None = None,
           cursor: str | None = None, customer_uuid: str | None = None) -> None:
    """Add to a running job's counts and errors; set its total, resume cursor or customer.
    JobStopped when the job was cancelled (or its source deleted) meanwhile."""
    with uow.write() as tx:
        job = _running(tx.session, uuid)
        _add(job, processed=processed, failed=failed, errors=errors, total=total, cursor=cursor,
             customer_uuid=customer_uuid)


def _running(session, uuid: str) -> SyncJob:
    """The job's locked row while it runs; JobStopped once it has ended or is gone."""
    job = _locked(session, uuid)
    if job is None or job.state in jobs.FINISHED:
        raise JobStopped(uuid)
    return job


def _add(job: SyncJob, *, processed: int = 0, failed: int = 0, errors=(), total: int | None = None,
         cursor: str | None = None, customer_uuid: str | None = None) -> None:
    job.processed += processed
    job.failed += failed
    if errors:
        job.errors = jobs.with_errors(job.errors, list(errors))
    if total is not None:
        job.total = total
    if cursor is not None:
        job.cursor = cursor
    if customer_uuid is not None:
        job.customer_uuid = customer_uuid
    job.progress_at = utcnow()


def reset_counts(uow: UnitOfWork, uuid: str) -> None:
    """Zero a job's counts and errors before it runs again from the start (a resumed re-sync)."""
    with uow.write() as tx:
        job = _locked(tx.session, uuid)
        if job is not None:
            job.processed = job.failed = 0
            job.errors = []


def finish(uow: UnitOfWork, uuid: str, *, reason: str | None = None, counts: dict | None = None) -> str | None:
    """End a job (failed when `reason` is given), first adding `counts` (report()'s arguments) in
    the same transaction; pass its outcome to its parent. Return its state."""
    with uow.write() as tx:
        job = _locked(tx.session, uuid)
        if job is None or job.state in jobs.FINISHED:
            return job.state if job else None
        if counts:
            _add(job, **counts)
        _close(tx, job, reason)
        if job.parent_id is not None:
            _child_finished(tx, job)
        return job.state


def _close(tx, job: SyncJob, reason: str | None, state: str | None = None) -> None:
    job.state = state or jobs.finished_state(failed_reason=reason)
    job.reason = jobs.storable(reason)[:2000] if reason else None
    job.finished_at = job.progress_at = utcnow()
    source_uuid = tx.session.get(DataSource, job.data_source_id).uuid
    counts = {"processed": job.processed, "failed": job.failed, "total": job.total}
    tx.record("sync_job_finished", job_id=job.uuid, kind=job.kind, data_source_uuid=source_uuid, state=job.state,
              counts=counts, reason=job.reason, finished_at=render(job.finished_at))
    log.info("%s %s %s: %d processed, %d failed%s", job.kind, job.uuid, job.state, job.processed, job.failed,
             f" ({job.reason})" if job.reason else "")


def _child_finished(tx, child: SyncJob) -> None:
    parent = tx.session.scalars(select(SyncJob).where(SyncJob.id == child.parent_id).with_for_update()
                                .execution_options(populate_existing=True)).first()
    if parent is None or parent.state in jobs.FINISHED:
        return
    if child.state == jobs.SUCCEEDED:
        parent.processed += 1
    else:
        parent.failed += 1
        problem = child.reason or "failed"
        parent.errors = jobs.with_errors(parent.errors, [jobs.error_entry(child.customer_external_id, None, problem)])
    if child.errors and child.state == jobs.SUCCEEDED:  # objects of the customer that failed
        parent.errors = jobs.with_errors(parent.errors, child.errors)
    parent.progress_at = utcnow()
    done = parent.processed + parent.failed
    if jobs.should_log_progress(done) and parent.started_at is not None:
        elapsed = (utcnow() - parent.started_at).total_seconds()
        log.info(jobs.Progress(parent.processed, parent.failed, parent.total, elapsed).line(
            f"{parent.kind} {parent.uuid}"))
    _close_parent_if_done(tx, parent)


def _close_parent_if_done(tx, parent: SyncJob) -> None:
    if jobs.parent_done(listed=parent.listed, total=parent.total, processed=parent.processed, failed=parent.failed):
        _close(tx, parent, jobs.parent_outcome(total=parent.total or 0, failed=parent.failed))


def add_children(uow: UnitOfWork, parent_uuid: str, external_ids: list[str]) -> list[str]:
    """Create a pending customer_resync child per customer id not yet queued; return the new ones'
    uuids. JobStopped when the parent was cancelled meanwhile."""
    with uow.write() as tx:
        parent = _running(tx.session, parent_uuid)
        if not external_ids:
            return []
        now = utcnow()
        rows = [{"uuid": str(uuid_lib.uuid4()), "kind": jobs.CUSTOMER_RESYNC, "data_source_id": parent.data_source_id,
                 "parent_id": parent.id, "customer_external_id": external_id, "state": jobs.PENDING, "processed": 0,
                 "failed": 0, "errors": [], "attempts": 0, "listed": False, "created_at": now}
                for external_id in dict.fromkeys(external_ids)]
        insert_ignore(tx.session, SyncJob.__table__, rows, ["parent_id", "customer_external_id"])
        wanted = [row["uuid"] for row in rows]
        created = set(tx.session.scalars(select(SyncJob.uuid).where(SyncJob.uuid.in_(wanted))))
        return [uuid for uuid in wanted if uuid in created]  # in the order of `external_ids`


def pending_children(uow: UnitOfWork, parent_uuid: str) -> list[str]:
    """Return the uuids of a parent's children still pending (to queue again after a resume)."""
    with uow.read() as session:
        parent = session.scalars(select(SyncJob).where(SyncJob.uuid == parent_uuid)).first()
        if parent is None:
            return []
        return list(session.scalars(select(SyncJob.uuid).where(SyncJob.parent_id == parent.id,
                                                               SyncJob.state == jobs.PENDING)))


def mark_listed(uow: UnitOfWork, parent_uuid: str, *, errors=()) -> None:
    """Record that a source sync queued every child; its total is their number. Finishes it
    at once when they have all finished already (or there were none)."""
    with uow.write() as tx:
        parent = _locked(tx.session, parent_uuid)
        if parent is None or parent.state in jobs.FINISHED:
            return
        parent.total = tx.session.scalar(select(func.count()).select_from(SyncJob)
                                         .where(SyncJob.parent_id == parent.id))
        children = tx.session.execute(select(SyncJob.state, func.count()).where(SyncJob.parent_id == parent.id)
                                      .group_by(SyncJob.state)).all()
        by_state = dict(children)
        # Counted afresh: a resumed listing must not count a child twice.
        parent.processed = by_state.get(jobs.SUCCEEDED, 0)
        parent.failed = by_state.get(jobs.FAILED, 0)
        if errors:
            parent.errors = jobs.with_errors(parent.errors, list(errors))
        parent.listed = True
        parent.progress_at = utcnow()
        log.info("%s %s: %d customers queued", parent.kind, parent.uuid, parent.total)
        _close_parent_if_done(tx, parent)


def delete_jobs_of(session, source_id: int) -> None:
    """Delete a data source's jobs (children first: they point at their parents)."""
    session.execute(update(SyncJob).where(SyncJob.data_source_id == source_id).values(parent_id=None))
    session.execute(SyncJob.__table__.delete().where(SyncJob.data_source_id == source_id))
