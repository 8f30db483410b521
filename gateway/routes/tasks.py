"""Tasks (`/v1/tasks`, §2.12): on a customer or a contact; completing one is an event in the feed."""
from gateway.auth import READ, WRITE
from gateway.http import api
from gateway.routes.notes import page_of, paging
from gateway.schemas import activities as schemas
from gateway.schemas.activities import task_wire

TASK_FILTERS = ("customer_uuid", "contact_uuid", "assignee", "due_date_on_or_after", "due_date_on_or_before",
                "completed")


class TaskRoutes:
    @api("POST", "/v1/tasks", permission=WRITE, body=schemas.TaskCreate(), response=schemas.TaskOut(), status=201,
         summary="Create a task on a customer or a contact")
    def tasks_create(self, request, body):
        return task_wire(self.activities_rpc.create_task(body))

    @api("GET", "/v1/tasks", permission=READ, query=schemas.TaskListQuery(), response=schemas.TaskPage(),
         summary="List tasks")
    def tasks_list(self, request, query):
        filters = {name: query[name] for name in TASK_FILTERS if query.get(name)}
        return page_of(self.activities_rpc.list_tasks(filters, *paging(query)), task_wire)

    @api("GET", "/v1/tasks/<string:uuid>", permission=READ, response=schemas.TaskOut(), summary="Retrieve a task")
    def tasks_retrieve(self, request, uuid):
        return task_wire(self.activities_rpc.get_task(uuid))

    @api("PATCH", "/v1/tasks/<string:uuid>", permission=WRITE, body=schemas.TaskFields(), response=schemas.TaskOut(),
         summary="Update a task; completed_at completes it, null reopens it (304 when nothing changes)",
         answers={304: "Nothing changed (no body)"})
    def tasks_update(self, request, uuid, body):
        result = self.activities_rpc.update_task(uuid, body)
        if not result["changed"]:
            return 304, None
        return task_wire(result["task"])

    @api("DELETE", "/v1/tasks/<string:uuid>", permission=WRITE, response=schemas.EmptyObjectOut(), summary="Delete a task")
    def tasks_delete(self, request, uuid):
        self.activities_rpc.delete_task(uuid)
        return {}
