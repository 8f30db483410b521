"""The customer record page in a real browser (headless chromium): what a user sees and does.

Each test sets up its customer through the API, then works the page as a user would; screenshots
of each step land in var/screenshots/.
"""
import time

import pytest

from tests.e2e import web_support
from tests.e2e.web_support import unique

browser, page = web_support.browser, web_support.page  # the fixtures this module's tests use


@pytest.fixture(scope="module")
def source(http):
    answer = http.post("/v1/data_sources", json={"name": unique("Web source")})
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def plan(http, source):
    answer = http.post("/v1/plans", json={"data_source_uuid": source["uuid"], "name": "Silver Monthly",
                                          "interval_count": 1, "interval_unit": "month"})
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.fixture
def customer(http, source):
    """A new lead with a unique name, made through the API."""
    name = unique("Acme")
    answer = http.post("/v1/customers", json={"data_source_uuid": source["uuid"], "external_id": unique("ext"),
                                              "name": name, "email": f"{name.lower()}@example.com",
                                              "company": "Acme Inc", "country": "US", "city": "Boston"})
    assert answer.status_code == 201, answer.text
    return answer.json()


def api_customer(http, uuid_):
    answer = http.get(f"/v1/customers/{uuid_}")
    assert answer.status_code == 200, answer.text
    return answer.json()


# ---- the list -------------------------------------------------------------------------------

def test_the_key_is_asked_once_and_the_list_finds_customers_by_name_or_email(page, customer, http):
    page.driver.get(f"{page.base_url}/app/")
    page.driver.execute_script("sessionStorage.clear()")
    page.driver.get(f"{page.base_url}/app/")
    page.find("#api-key").send_keys("not-a-key")
    page.click("#key-form button[type=submit]")
    page.wait_text("#api-key-error", "No valid API key")
    page.screenshot("wrong-key")

    page.sign_in_with_form("staff")
    page.type_into("#customer-search", customer["name"][5:].upper())  # part of the name, other case
    page.find("#customer-search").submit()
    page.wait_text("#customer-table a.customer-link", customer["name"])
    assert len(page.find_all("#customer-table tbody tr[data-uuid]")) == 1
    page.screenshot("found-by-name")

    page.type_into("#customer-search", customer["email"])
    page.find("#customer-search").submit()
    page.wait_text("#customer-table a.customer-link", customer["name"])

    page.click("#status-filter option[value='Active']")  # a lead is not Active
    page.wait_text("#customer-table tbody", "No ")
    page.click("#status-filter option[value='New Lead']")
    page.wait_text("#customer-table a.customer-link", customer["name"])

    page.click("#customer-table a.customer-link")  # the key is kept in the session: the record opens without asking again
    page.wait_text("#customer-name", customer["name"])
    assert not page.find_all("#api-key")


def test_the_list_pages_with_cursors(page, http, source):
    word = unique("Paged")
    for number in range(27):
        made = http.post("/v1/customers", json={"data_source_uuid": source["uuid"], "external_id": unique(),
                                                "name": f"{word} {number:02d}"})
        assert made.status_code == 201
    page.open(f"/app/?q={word}")
    page.wait_text("#customer-table tbody", f"{word} 00")
    assert len(page.find_all("#customer-table tbody tr[data-uuid]")) == 25
    page.click("#next-page")
    page.wait_text("#customer-table tbody", f"{word} 26")
    assert len(page.find_all("#customer-table tbody tr[data-uuid]")) == 2
    assert not page.find("#next-page").is_enabled()
    page.click("#previous-page")
    page.wait_text("#customer-table tbody", f"{word} 00")


# ---- the record ---------------------------------------------------------------------------

def test_a_staff_key_edits_a_detail_in_place(page, customer, http):
    page.open_customer(customer["uuid"], role="staff")
    page.wait_text("#details [data-field=company] .value", "Acme Inc")
    assert page.text("#details [data-field=location] .value") == "Boston, US"
    assert page.text("#details [data-field=uuid] .value") == customer["uuid"]
    page.screenshot("record")

    page.click("#details [data-field=company] button.edit")
    page.type_into("#details [data-field=company] input[name=company]", "Acme Renamed Ltd")
    page.screenshot("editing")
    page.click("#details [data-field=company] button.save")
    page.wait_text("#details [data-field=company] .value", "Acme Renamed Ltd")
    assert api_customer(http, customer["uuid"])["company"] == "Acme Renamed Ltd"

    page.click("#edit-name")
    page.type_into("#name-input", "Renamed Customer")
    page.click("#save-name")
    page.wait_text("#customer-name", "Renamed Customer")
    assert api_customer(http, customer["uuid"])["name"] == "Renamed Customer"


def test_an_error_from_the_api_is_shown_in_words_next_to_the_field(page, customer, http):
    page.open_customer(customer["uuid"], role="owner")
    page.click("#details [data-field=owner] button.edit")
    page.type_into("#details [data-field=owner] input[name=owner]", "not an email")
    page.click("#details [data-field=owner] button.save")
    page.wait_text("#details [data-field=owner] .error", "Owner: 'not an email' is not an email address")
    assert "invalid" in page.find("#details [data-field=owner] input[name=owner]").get_attribute("class")
    page.screenshot("owner-error")
    assert api_customer(http, customer["uuid"])["owner"] is None  # nothing was stored

    page.click("#details [data-field=location] button.edit")
    page.type_into("#details [data-field=location] input[name=country]", "Atlantis")
    page.click("#details [data-field=location] button.save")
    page.wait_text("#details [data-field=location] .error", "Location: country: 'Atlantis' is not an ISO 3166-1")
    assert "invalid" in page.find("#details [data-field=location] input[name=country]").get_attribute("class")


def test_tags_and_custom_attributes_are_added_and_removed(page, customer, http):
    page.open_customer(customer["uuid"])
    page.type_into("#new-tag", "vip")
    page.find("#new-tag").submit()
    page.wait_text("#tag-list", "vip")
    page.type_into("#add-attribute input[name=key]", "seats")
    page.click("#add-attribute select[name=type] option[value=Integer]")
    page.type_into("#add-attribute input[name=value]", "12")
    page.click("#add-attribute button[type=submit]")
    page.wait_text("#custom-attributes tr[data-key=seats]", "12")
    attributes = api_customer(http, customer["uuid"])["attributes"]
    assert attributes["tags"] == ["vip"] and attributes["custom"]["seats"] == 12
    page.screenshot("tags-and-attributes")

    page.click("#tag-list [aria-label='Remove tag vip']")
    page.wait_gone("#tag-list")
    assert api_customer(http, customer["uuid"])["attributes"]["tags"] == []


def test_a_contact_is_added_with_every_field_and_deleted(page, customer, http):
    page.open_customer(customer["uuid"], role="staff")
    page.click("#add-contact")
    fields = {"first_name": "Jane", "last_name": "Doe", "title": "CTO", "email": "jane@example.com",
              "phone": "+1 555 0100", "linked_in": "https://www.linkedin.com/in/jane-doe", "twitter": "@janedoe"}
    for name, value in fields.items():
        page.type_into(f"#contact-form input[name={name}]", value)
    page.type_into("#contact-form textarea[name=notes]", "Met at the conference")
    page.click("#contact-form .link-button")  # + Add attribute
    page.type_into("#contact-custom .custom-key", "Facebook")
    page.type_into("#contact-custom .custom-value", "https://facebook.com/jane")
    page.screenshot("contact-form")
    page.click("#save-contact")
    for shown in ("Jane Doe", "CTO", "@janedoe", "https://facebook.com/jane"):  # found afresh: a live refresh
        page.wait_text("#contact-list .contact", shown)                     # may redraw the card meanwhile

    contacts = http.get(f"/v1/customers/{customer['uuid']}/contacts").json()["entries"]
    assert len(contacts) == 1
    stored = contacts[0]
    assert {name: stored[name] for name in fields} == fields
    assert stored["notes"] == "Met at the conference" and stored["custom"] == {"Facebook": "https://facebook.com/jane"}
    page.screenshot("contact-added")

    page.click("#contact-list .contact [aria-label^='Delete contact']")  # asks first
    page.wait_text("#contact-list .contact [aria-label^='Delete contact']", "Delete?")
    assert page.find("#contact-list .contact")  # still there
    page.click("#contact-list .contact [aria-label^='Delete contact']")
    page.wait_text("#contact-list", "No contacts.")
    assert http.get(f"/v1/customers/{customer['uuid']}/contacts").json()["entries"] == []


def test_a_delete_the_page_asks_about_survives_a_live_update_of_the_list(page, customer, http):
    created = http.post("/v1/contacts", json={"customer_uuid": customer["uuid"], "first_name": "Kept",
                                               "data_source_uuid": customer["data_source_uuid"]})
    assert created.status_code == 201, created.text
    page.open_customer(customer["uuid"], role="staff")
    page.wait_text("#contact-list .contact", "Kept")
    page.click("#contact-list .contact [aria-label^='Delete contact']")
    page.wait_text("#contact-list .contact [aria-label^='Delete contact']", "Delete?")

    # changed elsewhere: the open page re-renders its contacts from the live stream
    assert http.patch(f"/v1/contacts/{created.json()['uuid']}", json={"title": "Re-rendered"}).status_code == 200
    page.wait_text("#contact-list .contact", "Re-rendered")
    assert page.find("#contact-list .contact [aria-label^='Delete contact']").text == "Delete?"


def test_a_contact_the_api_refuses_shows_why_at_the_field(page, customer):
    page.open_customer(customer["uuid"], role="staff")
    page.click("#add-contact")
    page.type_into("#contact-form input[name=email]", "not-an-email")
    page.click("#save-contact")
    page.wait_text("#contact-form-error", "email")
    assert "invalid" in page.find("#contact-form input[name=email]").get_attribute("class")
    page.screenshot("contact-error")


def test_a_logged_call_shows_in_activities_and_the_type_toggles_hide_it(page, customer, http):
    page.open_customer(customer["uuid"], role="staff")
    page.wait_text("#activity-feed", "Customer created")
    page.click("#log-call")
    page.type_into("#call-text", "Talked pricing")
    page.type_into("#call-minutes", "5")
    page.click("#save-call")
    page.wait_text("#activity-feed li[data-type=call]", "Talked pricing")
    page.wait_text("#activity-feed li[data-type=call]", "5 min")  # found afresh, as above
    notes = http.get("/v1/notes", params={"customer_uuid": customer["uuid"]}).json()["entries"]
    assert [(n["type"], n["call_duration"], n["text"]) for n in notes] == [("call", 300, "Talked pricing")]

    page.click("#add-note")
    page.type_into("#note-text", "Wants an annual plan")
    page.click("#save-note")
    page.wait_text("#activity-feed li[data-type=note]", "Wants an annual plan")
    page.screenshot("activities")

    page.click("#activity-toggles [data-type=call]")  # hide calls
    page.wait_gone("#activity-feed li[data-type=call]")
    assert page.find_all("#activity-feed li[data-type=note]")
    page.click("#activity-toggles [data-type=call]")
    page.wait_visible("#activity-feed li[data-type=call]")


def test_tasks_and_opportunities_are_added_from_the_profile(page, customer, http):
    page.open_customer(customer["uuid"], role="staff")
    page.type_into("#add-task input[name=task_details]", "Send the contract")
    page.type_into("#add-task input[name=assignee]", "sam@example.com")
    page.find("#add-task input[name=due_date]").send_keys("03012031")
    page.click("#add-task button[type=submit]")
    page.wait_text("#task-list", "Send the contract")

    page.click("#add-opportunity")
    for name, value in (("owner", "sam@example.com"), ("pipeline", "Sales"), ("pipeline_stage", "Qualified"),
                        ("amount_in_cents", "1200.50")):
        page.type_into(f"#opportunity-form input[name={name}]", value)
    page.find("#opportunity-form input[name=estimated_close_date]").send_keys("06302031")
    page.click("#opportunity-form button[type=submit]")
    page.wait_text("#opportunity-list", "$1,200.50")
    stored = http.get("/v1/opportunities", params={"customer_uuid": customer["uuid"]}).json()["entries"]
    assert [(o["pipeline"], o["amount_in_cents"]) for o in stored] == [("Sales", 120050)]
    page.screenshot("tasks-and-opportunities")


def test_mrr_shows_in_the_header_and_the_subscriptions_tab_after_an_invoice_import(page, customer, http, plan):
    page.open_customer(customer["uuid"], role="staff")
    assert page.text("#mrr-value") == "$0.00"
    answer = http.post(f"/v1/import/customers/{customer['uuid']}/invoices", json={"invoices": [{
        "external_id": unique("inv"), "date": "2024-01-01T00:00:00Z", "currency": "USD",
        "line_items": [{"type": "subscription", "subscription_external_id": unique("sub"), "plan_uuid": plan["uuid"],
                        "service_period_start": "2024-01-01T00:00:00Z", "service_period_end": "2024-02-01T00:00:00Z",
                        "amount_in_cents": 5000, "external_id": unique("line")}],
        "transactions": [{"date": "2024-01-01T00:00:00Z", "type": "payment", "result": "successful",
                          "external_id": unique("tr")}]}]})
    assert answer.status_code == 201, answer.text

    # the open page hears of it: no reload
    page.wait_text("#mrr-value", "$50.00")
    page.wait_text("#arr-value", "$600.00")
    page.wait_text("#net-payments-value", "$50.00")
    page.wait_text("#customer-status", "Active")
    since = page.wait_visible("#subscriber-since-value")
    assert "2024-01-01" in since.get_attribute("title")  # hover shows the exact date and time
    page.screenshot("header-after-import")

    page.click("#tab-subscriptions")
    page.wait_visible("#mrr-chart svg circle")
    page.wait_text("#subscriptions-table", "$50.00")
    page.wait_text("#movements-table", "new_biz")
    page.wait_text("#revenue-table", "2024-01")
    page.wait_text("#transactions-table", "successful")
    page.screenshot("subscriptions-tab")

    from selenium.webdriver.common.action_chains import ActionChains
    chart = page.find("#mrr-chart svg")
    width = chart.size["width"]
    ActionChains(page.driver).move_to_element_with_offset(chart, -width // 4, 0).click_and_hold() \
        .move_by_offset(width // 3, 0).release().perform()
    page.wait_visible("#chart-reset")  # zoomed into the selected range
    page.screenshot("chart-zoomed")
    page.click("#chart-reset")
    page.wait_gone("#chart-reset")


def test_a_read_only_key_sees_no_edit_control(page, customer):
    page.open_customer(customer["uuid"], role="read_only")
    page.wait_text("#details [data-field=company] .value", "Acme Inc")
    page.wait_text("#activity-feed", "Customer created")
    page.wait_text("#contact-list", "No contacts.")
    assert "read only" in page.text("#whoami")
    for control in ("#details button.edit", "#edit-name", "#record-menu-button", "#add-contact", "#add-note",
                    "#log-call", "#add-task", "#add-opportunity", "#new-tag", "#add-attribute",
                    "#tag-list button", "#contact-list button"):
        assert page.find_all(control) == [], f"a read_only key sees {control}"
    page.click("#tab-subscriptions")
    page.wait_visible("#subscriptions-section")
    page.screenshot("read-only")


def test_a_change_made_through_the_api_appears_on_the_open_page(page, customer, http):
    page.open_customer(customer["uuid"], role="read_only")
    page.wait_text("#details [data-field=company] .value", "Acme Inc")

    started = time.monotonic()
    assert http.patch(f"/v1/customers/{customer['uuid']}", json={"company": "Changed Elsewhere"}).status_code == 200
    page.wait_text("#details [data-field=company] .value", "Changed Elsewhere", seconds=10)
    print(f"customer change seen on the page {time.monotonic() - started:.2f}s after the API answered")

    made = http.post(f"/v1/customers/{customer['uuid']}/contacts",
                     json={"data_source_uuid": customer["data_source_uuid"], "first_name": "Live", "last_name": "Contact"})
    assert made.status_code == 201, made.text
    page.wait_text("#contact-list", "Live Contact", seconds=10)
    note = http.post("/v1/notes", json={"customer_uuid": customer["uuid"], "type": "note", "text": "Written elsewhere"})
    assert note.status_code == 201, note.text
    page.wait_text("#activity-feed", "Written elsewhere", seconds=10)
    page.screenshot("changed-elsewhere")


def test_the_menu_resyncs_merges_and_deletes(page, customer, http, source):
    other = http.post("/v1/customers", json={"data_source_uuid": source["uuid"], "external_id": unique(),
                                             "name": unique("Duplicate")}).json()
    page.open_customer(customer["uuid"], role="owner")
    page.click("#record-menu-button")
    page.screenshot("menu")
    page.click("#menu-resync")
    result = page.wait_visible("#resync-result")
    # this customer comes from an Import API source: there is no billing system to re-sync from,
    # and the page says so in words (a Stripe customer's re-sync is tested in test_sync.py)
    assert result.text.startswith("Re-sync failed: ") and "connector" in result.text

    page.click("#record-menu-button")
    page.click("#menu-merge")
    page.type_into("#merge-search", other["name"])
    page.find("#merge-search").submit()
    page.wait_visible(f"#merge-candidates button[data-uuid='{other['uuid']}']").click()
    page.screenshot("merge-dialog")
    page.click("#merge-confirm")
    page.wait_gone("#merge-dialog")
    page.wait_text("#details [data-field=sources] .value", other["external_id"])
    assert http.get(f"/v1/customers/{other['uuid']}").status_code == 404

    page.click("#record-menu-button")
    page.click("#menu-delete")
    page.wait_visible("#delete-dialog")
    page.screenshot("delete-confirm")
    assert http.get(f"/v1/customers/{customer['uuid']}").status_code == 200  # nothing before confirming
    page.click("#delete-confirm")
    page.wait_visible("#customer-table")
    assert http.get(f"/v1/customers/{customer['uuid']}").status_code == 404


def test_a_staff_key_sees_no_delete(page, customer):
    page.open_customer(customer["uuid"], role="staff")
    page.click("#record-menu-button")
    page.wait_visible("#menu-merge")
    assert page.find_all("#menu-delete") == []
