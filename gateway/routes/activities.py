"""A customer's activity: the feed and email threads (our own routes), the MRR movement
activities (§2.5), and `ActivityRoutes`, the one mixin the gateway adds for every route the
activities service serves (notes, tasks and opportunities live in their own modules)."""
from gateway.auth import READ, WRITE
from gateway.http import api
from gateway.routes.notes import NoteRoutes, page_of, paging
from gateway.routes.opportunities import OpportunityRoutes
from gateway.routes.tasks import TaskRoutes
from gateway.schemas import activities as schemas
from gateway.schemas.activities import activity_wire, customer_activity_wire
from roster.errors import NotFound, ValidationFailed

C = "/v1/customers/<string:uuid>"
MAX_PER_PAGE = 200


def _with_per_page(page: dict, per_page: int | None) -> dict:
    return {**page, "per_page": min(per_page or MAX_PER_PAGE, MAX_PER_PAGE)}


class CustomerActivityRoutes:
    def _customer_must_exist(self, uuid: str, page: dict, cursor: str | None) -> None:
        """404 for an unknown customer; asked only when its first page is empty (a known one has entries)."""
        if not page["entries"] and cursor is None:
            self.customers_rpc.get_customer(uuid)

    @api("GET", f"{C}/feed", permission=READ, query=schemas.FeedQuery(), response=schemas.FeedPage(),
         summary="A customer's activity feed, newest first, optionally of some types")
    def customer_feed(self, request, uuid, query):
        cursor, per_page = paging(query)
        page = self.activities_rpc.feed(uuid, query.get("types"), cursor, per_page)
        self._customer_must_exist(uuid, page, cursor)
        return page

    @api("POST", f"{C}/threads", permission=WRITE, body=schemas.ThreadCreate(), response=schemas.ThreadOut(),
         status=201, summary="Log an email thread with a customer's contacts")
    def customer_threads_create(self, request, uuid, body):
        try:
            return self.activities_rpc.create_thread(uuid, body)
        except ValidationFailed as failure:
            if failure.param == "customer_uuid":
                raise NotFound(f"Customer {uuid} not found", param="uuid")
            raise

    @api("GET", f"{C}/threads", permission=READ, query=schemas.CursorQuery(), response=schemas.ThreadPage(),
         summary="List a customer's email threads with their messages")
    def customer_threads_list(self, request, uuid, query):
        cursor, per_page = paging(query)
        page = self.activities_rpc.list_threads(uuid, cursor, per_page)
        self._customer_must_exist(uuid, page, cursor)
        return page

    @api("GET", f"{C}/threads/<string:thread_uuid>", permission=READ, response=schemas.ThreadOut(),
         summary="Retrieve an email thread")
    def customer_threads_retrieve(self, request, uuid, thread_uuid):
        return self.activities_rpc.get_thread(uuid, thread_uuid)

    @api("POST", f"{C}/threads/<string:thread_uuid>/messages", permission=WRITE, body=schemas.ThreadMessagesAdd(),
         response=schemas.ThreadOut(), status=201, summary="Add messages (replies) to an email thread")
    def customer_threads_reply(self, request, uuid, thread_uuid, body):
        return self.activities_rpc.add_thread_messages(uuid, thread_uuid, body)

    @api("GET", f"{C}/activities", permission=READ, query=schemas.CursorQuery(),
         response=schemas.CustomerActivityPage(), summary="A customer's MRR movement activities, newest first")
    def customer_activities(self, request, uuid, query):
        cursor, per_page = paging(query)
        page = self.activities_rpc.customer_activities(uuid, cursor, per_page)
        self._customer_must_exist(uuid, page, cursor)
        return _with_per_page(page_of(page, customer_activity_wire), per_page)

    @api("GET", "/v1/activities", permission=READ, query=schemas.ActivityQuery(), response=schemas.ActivityPage(),
         summary="Every customer's MRR movement activities, by date")
    def activities_list(self, request, query):
        cursor, per_page = paging(query)
        filters = {key: query[name] for name, key in (("start_date", "start-date"), ("end_date", "end-date"),
                                                      ("type", "type"), ("order", "order")) if query.get(name)}
        page = self.activities_rpc.list_activities(filters, cursor, per_page)
        return _with_per_page(page_of(page, activity_wire), per_page)


class ActivityRoutes(NoteRoutes, TaskRoutes, OpportunityRoutes, CustomerActivityRoutes):
    """Every route the activities service serves."""
