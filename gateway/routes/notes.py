"""Notes and call logs: `/v1/notes` (EntityNote) and the legacy `/v1/customer_notes` (§2.4)."""
from gateway.auth import READ, WRITE
from gateway.http import api
from gateway.schemas import activities as schemas
from gateway.schemas.activities import customer_note_wire, entity_note_wire

NOTE_FILTERS = ("customer_uuid", "contact_uuid", "type", "author_email")


def page_of(page: dict, render) -> dict:
    """Render a page from the activities service; `has_more` and `cursor` are always present."""
    return {"entries": [render(entry) for entry in page["entries"]], "has_more": page["has_more"],
            "cursor": page["cursor"]}


def paging(query: dict) -> tuple[str | None, int | None]:
    return query.get("cursor") or None, query.get("per_page")


class NoteRoutes:
    @api("POST", "/v1/notes", permission=WRITE, body=schemas.NoteCreate(), response=schemas.EntityNoteOut(),
         status=201, summary="Create a note or call log on a customer or a contact")
    def notes_create(self, request, body):
        return entity_note_wire(self.activities_rpc.create_note(body))

    @api("GET", "/v1/notes", permission=READ, query=schemas.NoteListQuery(), response=schemas.EntityNotePage(),
         summary="List notes and call logs")
    def notes_list(self, request, query):
        filters = {name: query[name] for name in NOTE_FILTERS if query.get(name)}
        page = self.activities_rpc.list_notes(filters, *paging(query))
        return page_of(page, entity_note_wire)

    @api("GET", "/v1/notes/<string:uuid>", permission=READ, response=schemas.EntityNoteOut(),
         summary="Retrieve a note or call log")
    def notes_retrieve(self, request, uuid):
        return entity_note_wire(self.activities_rpc.get_note(uuid))

    @api("PATCH", "/v1/notes/<string:uuid>", permission=WRITE, body=schemas.NoteUpdate(),
         response=schemas.EntityNoteOut(), summary="Update a note or call log (304 when nothing changes)",
         answers={304: "Nothing changed (no body)"})
    def notes_update(self, request, uuid, body):
        result = self.activities_rpc.update_note(uuid, body)
        if not result["changed"]:
            return 304, None
        return entity_note_wire(result["note"])

    @api("DELETE", "/v1/notes/<string:uuid>", permission=WRITE, response=schemas.NoteDeletedOut(), status=202,
         summary="Delete a note or call log")
    def notes_delete(self, request, uuid):
        self.activities_rpc.delete_note(uuid)
        return 202, {"message": "Note has been deleted."}

    # ---- the legacy routes: the same notes, every field non-null

    @api("POST", "/v1/customer_notes", permission=WRITE, body=schemas.CustomerNoteCreate(),
         response=schemas.CustomerNoteOut(), status=201, summary="Create a customer note (legacy)")
    def customer_notes_create(self, request, body):
        return customer_note_wire(self.activities_rpc.create_note(body))

    @api("GET", "/v1/customer_notes", permission=READ, query=schemas.CustomerNoteListQuery(),
         response=schemas.CustomerNotePage(), summary="List a customer's notes and call logs (legacy)")
    def customer_notes_list(self, request, query):
        filters = {name: query[name] for name in ("type", "author_email") if query.get(name)}
        if query.get("customer_uuid"):
            filters["any_customer_uuid"] = query["customer_uuid"]  # its contacts' notes too
        return page_of(self.activities_rpc.list_notes(filters, *paging(query)), customer_note_wire)

    @api("GET", "/v1/customer_notes/<string:uuid>", permission=READ, response=schemas.CustomerNoteOut(),
         summary="Retrieve a customer note (legacy)")
    def customer_notes_retrieve(self, request, uuid):
        return customer_note_wire(self.activities_rpc.get_note(uuid))

    @api("PATCH", "/v1/customer_notes/<string:uuid>", permission=WRITE, body=schemas.NoteUpdate(),
         response=schemas.CustomerNoteOut(), summary="Update a customer note (legacy)")
    def customer_notes_update(self, request, uuid, body):
        return customer_note_wire(self.activities_rpc.update_note(uuid, body)["note"])

    @api("DELETE", "/v1/customer_notes/<string:uuid>", permission=WRITE, response=schemas.EmptyObjectOut(),
         summary="Delete a customer note (legacy)")
    def customer_notes_delete(self, request, uuid):
        self.activities_rpc.delete_note(uuid)
        return {}
