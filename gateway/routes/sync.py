"""Sync routes (ours, docs/sync.md): re-sync a customer, sync a data source, import a CSV file, and
the jobs they queue. billing_sync owns the jobs; its sync workers run them."""
import os
import uuid as uuid_lib
from pathlib import Path

from werkzeug.exceptions import RequestEntityTooLarge

from gateway.auth import WRITE
from gateway.http import api, body_stream
from gateway.schemas import sync as schemas
from roster import config
from roster.errors import BadRequest, PayloadTooLarge

CSV_UPLOAD_MAX_BYTES = 100 * 1024 * 1024  # default of CSV_UPLOAD_MAX_BYTES; ~1M rows of the layout
CHUNK = 64 * 1024
CSV_BODY = {  # the upload as the OpenAPI document describes it (docs/csv-import.md)
    "text/csv": {"schema": {"type": "string"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
}


def csv_upload_limit() -> int:
    """Return the largest CSV upload accepted, in bytes (CSV_UPLOAD_MAX_BYTES, default 100 MiB)."""
    return int(os.environ.get("CSV_UPLOAD_MAX_BYTES") or CSV_UPLOAD_MAX_BYTES)


def uploads_dir() -> Path:
    """Return where uploaded files wait for the sync workers (DATA_DIR/uploads, shared with them)."""
    return config.data_dir() / "uploads"


def save_upload(request, limit: int) -> Path:
    """Stream the request's CSV (a raw text/csv body, or the `file` part of a multipart form) to a
    new file under uploads_dir(), never holding it in memory; 413 past `limit`, 400 when empty."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The CSV file is larger than {limit} bytes (CSV_UPLOAD_MAX_BYTES)")
    folder = uploads_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid_lib.uuid4()}.csv"
    if (request.mimetype or "").startswith("multipart/"):
        request.max_content_length = limit + 64 * 1024  # werkzeug spools parts to disk beyond 500 KB
        try:
            upload = request.files.get("file")
        except RequestEntityTooLarge:  # a part without a file name over 500 KB, or over 1,000 parts
            raise PayloadTooLarge("A multipart upload holds at most 1,000 parts, and a part without a file "
                                  "name at most 500 KB: send the CSV as the file part `file`", param="file")
        if upload is None:
            raise BadRequest("A multipart upload needs the CSV in a part named `file`", param="file")
        source = upload.stream
    else:
        source = body_stream(request)
    written = 0
    try:
        with open(path, "wb") as out:
            while True:
                chunk = source.read(CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > limit:
                    raise PayloadTooLarge(f"The CSV file is larger than {limit} bytes (CSV_UPLOAD_MAX_BYTES)")
                out.write(chunk)
        if written == 0:
            raise BadRequest("The CSV file is empty", param="file")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


class SyncRoutes:
    @api("POST", "/v1/customers/<uuid>/resync", permission=WRITE, response=schemas.SyncJobOut(), status=202,
         summary="Re-sync a customer from its billing system (queues a job)")
    def resync_customer(self, request, uuid):
        return 202, self.billing_rpc.request_customer_resync(uuid)

    @api("POST", "/v1/data_sources/<uuid>/sync", permission=WRITE, response=schemas.SyncJobOut(), status=202,
         summary="Sync every customer of a connector data source (queues a job)")
    def sync_data_source(self, request, uuid):
        return 202, self.billing_rpc.request_source_sync(uuid)

    @api("POST", "/v1/data_sources/<uuid>/csv_imports", permission=WRITE, response=schemas.SyncJobOut(),
         status=202, raw_body=CSV_BODY,
         summary="Import a CSV file into a data source (text/csv body or multipart `file`; "
                 "up to CSV_UPLOAD_MAX_BYTES, default 100 MiB; queues a job)")
    def import_csv(self, request, uuid):
        self.billing_rpc.get_data_source(uuid, {})  # 404 before reading a large body for nothing
        path = save_upload(request, csv_upload_limit())
        self.billing_rpc.restart_deadline()  # the upload may have taken longer than the first one
        try:
            return 202, self.billing_rpc.request_csv_import(uuid, str(path))
        except Exception:
            path.unlink(missing_ok=True)
            raise

    @api("GET", "/v1/sync_jobs/stats", response=schemas.SyncJobStatsOut(),
         summary="The sync backlog: jobs pending, running, succeeded, failed; oldest pending age")
    def sync_job_stats(self, request):
        return self.billing_rpc.sync_job_stats()

    @api("GET", "/v1/sync_jobs/<job_id>", response=schemas.SyncJobOut(), summary="A sync job: state, counts, errors")
    def get_sync_job(self, request, job_id):
        return self.billing_rpc.get_sync_job(job_id)

    @api("POST", "/v1/sync_jobs/<job_id>/cancel", permission=WRITE, response=schemas.SyncJobOut(),
         summary="Cancel a pending or running sync job and its unfinished customers' jobs (422 once it has ended)")
    def cancel_sync_job(self, request, job_id):
        return self.billing_rpc.cancel_sync_job(job_id)
