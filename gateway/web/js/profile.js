// The Profile tab: details (editable in place by staff, admin and owner keys), custom attributes,
// tags, contacts, tasks, opportunities and the activity feed with notes and calls.
import { api } from "./api.js";
import { fill, h, showError } from "./dom.js";
import { LEAD_STATUSES, day, exact, fromInputMoment, fullName, money, relative, toInputMoment } from "./format.js";

const C = (rec) => `/customers/${encodeURIComponent(rec.uuid)}`;

export function renderProfile(rec, panel) {
  const left = h("div", {});
  const right = h("div", {});
  fill(panel, h("div", { class: "columns" }, left, right));
  left.append(detailsCard(rec), attributesCard(rec), tagsCard(rec));
  right.append(activitiesCard(rec), contactsCard(rec), tasksCard(rec), opportunitiesCard(rec));
}

function card(id, title, ...actions) {
  const body = h("div", { class: "card-body" });
  const error = h("p", { class: "error", id: `${id}-error` });
  const element = h("section", { class: "card", id },
    h("div", { class: "card-head" }, h("h2", {}, title), h("span", { class: "spacer" }), actions), error, body);
  return { element, body, error };
}

/** Mark the input the API's `param` names, and say why next to the form. */
function blame(form, slot, failure, prefix = "", own = null) {
  for (const input of form.querySelectorAll(".invalid")) input.classList.remove("invalid");
  const param = (failure.param || "").split(/[.[]/)[0];
  const input = param ? form.querySelector(`[name="${CSS.escape(param)}"]`) : null;
  if (input) input.classList.add("invalid");
  // "owner: 'x' is not an email address" under the Owner row reads "Owner: 'x' is not ..."
  const named = own && failure.param === own && failure.message.startsWith(`${own}:`);
  showError(slot, `${prefix}${named ? failure.message.slice(failure.param.length + 1).trim() : failure.message}`);
}

// ---- details -------------------------------------------------------------------------------------

const DETAILS = [
  { key: "owner", label: "Owner", show: (c) => c.owner, inputs: (c) => [text("owner", c.owner, "email")],
    body: ([owner]) => ({ owner: owner.value.trim() || null }) },
  { key: "status", label: "Status", show: (c) => c.status,
    inputs: (c) => [h("select", { name: "status" },
      (LEAD_STATUSES.includes(c.status) || !c.status ? [] : [h("option", { value: c.status, selected: true }, c.status)]),
      LEAD_STATUSES.map((s) => h("option", { value: s, selected: s === c.status }, s)))],
    body: ([status]) => ({ status: status.value }) },
  { key: "email", label: "Email", show: (c) => c.email, inputs: (c) => [text("email", c.email, "email")],
    body: ([email]) => ({ email: email.value.trim() }) },
  { key: "company", label: "Company name", show: (c) => c.company, inputs: (c) => [text("company", c.company)],
    body: ([company]) => ({ company: company.value }) },
  { key: "website_url", label: "Website", show: (c) => c.website_url,
    inputs: (c) => [text("website_url", c.website_url, "text", "https://example.com")],
    body: ([url]) => ({ website_url: url.value.trim() || null }) },
  { key: "location", label: "Location", show: (c) => [c.city, c.state, c.zip, c.country].filter(Boolean).join(", "),
    inputs: (c) => [text("city", c.city, "text", "City"), text("state", c.state, "text", "State"),
      text("zip", c.zip, "text", "ZIP"), text("country", c.country, "text", "Country (US)")],
    body: ([city, state, zip, country]) => ({ city: city.value.trim() || null, state: state.value.trim() || null,
      zip: zip.value.trim() || null, country: country.value.trim() || null }) },
  { key: "lead_created_at", label: "Lead created at", moment: true, show: (c) => c.lead_created_at,
    inputs: (c) => [h("input", { type: "datetime-local", name: "lead_created_at", value: toInputMoment(c.lead_created_at) })],
    body: ([input]) => ({ lead_created_at: fromInputMoment(input.value) }) },
  { key: "free_trial_started_at", label: "Trial started at", moment: true, show: (c) => c.free_trial_started_at,
    inputs: (c) => [h("input", { type: "datetime-local", name: "free_trial_started_at",
      value: toInputMoment(c.free_trial_started_at) })],
    body: ([input]) => ({ free_trial_started_at: fromInputMoment(input.value) }) },
];

function text(name, value, type = "text", placeholder = "") {
  return h("input", { type, name, value: value || "", placeholder, "aria-label": placeholder || name });
}

function detailsCard(rec) {
  const { element, body } = card("details", "Details");
  let editing = null; // the detail being edited: a live refresh waits until it is saved or cancelled
  rec.customerListeners.push(() => { if (!editing) draw(); });

  function draw() {
    editing = null;
    const c = rec.customer;
    fill(body, DETAILS.map((detail) => row(detail, c)),
      h("div", { class: "detail", "data-field": "uuid" }, h("span", { class: "label" }, "UUID"),
        h("span", { class: "value mono" }, c.uuid), h("span")),
      h("div", { class: "detail", "data-field": "sources" }, h("span", { class: "label" }, "Sources"),
        h("span", { class: "value" }, sources(rec, c)), h("span")));
  }

  function row(detail, c) {
    const value = detail.show(c);
    const shown = h("span", { class: "value" }, value ? (detail.moment ? relative(value) : value) : h("span", { class: "muted" }, "—"));
    if (detail.moment && value) shown.title = exact(value);
    const error = h("p", { class: "error" });
    const element = h("div", { class: "detail", "data-field": detail.key }, h("span", { class: "label" }, detail.label), shown);
    if (!rec.canWrite) {
      element.append(h("span"));
      return element;
    }
    const edit = h("button", { type: "button", class: "icon-button edit", "aria-label": `Edit ${detail.label}`,
      title: `Edit ${detail.label}` }, "✎");
    element.append(edit, error);
    edit.addEventListener("click", () => {
      const inputs = detail.inputs(rec.customer);
      const form = h("form", { class: "edit-row" }, inputs,
        h("button", { type: "submit", class: "icon-button save", "aria-label": `Save ${detail.label}`, title: "Save" }, "✓"),
        h("button", { type: "button", class: "icon-button cancel", "aria-label": "Cancel", title: "Cancel", onclick: draw }, "✕"));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        showError(error, "");
        try {
          const changed = await api("PATCH", C(rec), { body: detail.body(inputs) });
          editing = null;
          rec.setCustomer(changed);
        } catch (failure) {
          blame(form, error, failure, `${detail.label}: `, detail.key);
        }
      });
      editing = detail.key;
      shown.replaceWith(form);
      edit.hidden = true;
      inputs[0].focus();
    });
    return element;
  }
  return element;
}

function sources(rec, c) {
  const names = Object.fromEntries(rec.dataSources.map((source) => [source.uuid, source.name]));
  const ids = c.data_source_uuids || [c.data_source_uuid];
  return [ids.map((uuid) => h("div", { class: "source" }, names[uuid] || uuid)),
    h("div", { class: "muted external-ids" }, `External ids: ${(c.external_ids || [c.external_id]).join(", ")}`)];
}

// ---- custom attributes ---------------------------------------------------------------------------

const ATTRIBUTE_TYPES = ["String", "Integer", "Decimal", "Timestamp", "Boolean"];

function typedValue(type, raw) {
  if (type === "Integer") return /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : raw;
  if (type === "Boolean") return raw === "true" ? true : raw === "false" ? false : raw;
  return raw;
}

function attributesCard(rec) {
  const { element, body, error } = card("custom-attributes", "Custom attributes");
  const list = h("div", { id: "attribute-list" });
  fill(body, list);
  if (rec.canWrite) body.append(addForm());
  rec.customerListeners.push(() => { if (!list.querySelector("form")) draw(); });

  function draw() {
    const custom = rec.customer.attributes?.custom || {};
    const rows = Object.entries(custom).map(([key, value]) => {
      const tr = h("tr", { "data-key": key }, h("td", {}, key),
        h("td", { class: "value" }, value === null ? "—" : String(value)));
      if (rec.canWrite) {
        tr.append(h("td", { class: "num" },
          h("button", { type: "button", class: "icon-button", "aria-label": `Edit ${key}`, onclick: () => editValue(tr, key, value) }, "✎"),
          h("button", { type: "button", class: "icon-button", "aria-label": `Remove ${key}`, onclick: () => remove(key) }, "✕")));
      }
      return tr;
    });
    fill(list, rows.length ? h("table", {}, h("tbody", {}, rows)) : h("p", { class: "muted" }, "No custom attributes."));
  }

  function editValue(tr, key, value) {
    const input = h("input", { name: "value", value: value === null ? "" : String(value), "aria-label": `Value of ${key}` });
    const form = h("form", { class: "inline-form" }, input, h("button", { type: "submit", class: "icon-button", "aria-label": "Save" }, "✓"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const current = rec.customer.attributes.custom[key];
      const type = typeof current === "number" ? "Integer" : typeof current === "boolean" ? "Boolean" : "String";
      await change("PUT", { custom: { [key]: typedValue(type, input.value) } }, form);
    });
    fill(tr.querySelector(".value"), form);
    input.focus();
  }

  async function remove(key) {
    await change("DELETE", { custom: [key] });
  }

  async function change(method, payload, form = null) {
    showError(error, "");
    try {
      await api(method, `${C(rec)}/attributes/custom`, { body: payload });
    } catch (failure) {
      if (form) blame(form, error, failure); else showError(error, failure.message);
      return false;
    }
    if (form) for (const input of form.querySelectorAll(".invalid")) input.classList.remove("invalid");
    if (list.querySelector("form")) fill(list);
    await rec.sections.customer();
    return true;
  }

  function addForm() {
    const key = h("input", { name: "key", placeholder: "Key", "aria-label": "Attribute key" });
    const type = h("select", { name: "type", "aria-label": "Attribute type" }, ATTRIBUTE_TYPES.map((t) => h("option", { value: t }, t)));
    const value = h("input", { name: "value", placeholder: "Value", "aria-label": "Attribute value" });
    const form = h("form", { class: "inline-form", id: "add-attribute" }, key, type, value,
      h("button", { type: "submit" }, "Add"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (await change("POST", { custom: [{ type: type.value, key: key.value.trim(), value: typedValue(type.value, value.value) }] }, form)) {
        form.reset();
      }
    });
    return form;
  }
  return element;
}

// ---- tags ----------------------------------------------------------------------------------------

function tagsCard(rec) {
  const { element, body, error } = card("tags", "Tags");
  const list = h("div", {});
  fill(body, list);
  if (rec.canWrite) {
    const input = h("input", { name: "tags", placeholder: "New tag", "aria-label": "New tag", id: "new-tag" });
    const form = h("form", { class: "inline-form" }, input, h("button", { type: "submit" }, "Add tag"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (input.value.trim() && await change("POST", [input.value.trim()], form)) form.reset();
    });
    body.append(form);
  }
  rec.customerListeners.push(() => draw());

  // Redrawn only when the tags changed: a live refresh of the same record replaced the chips, and
  // a click on a remove button at that moment went to a chip no longer on the page.
  let drawn = null;
  function draw() {
    const tags = rec.customer.attributes?.tags || [];
    const shown = JSON.stringify(tags);
    if (shown === drawn) return;
    drawn = shown;
    const chips = h("div", { class: "chips", id: "tag-list" }, tags.map((tag) => h("span", { class: rec.canWrite ? "chip" : "chip plain", "data-tag": tag },
      tag, rec.canWrite ? h("button", { type: "button", class: "icon-button", "aria-label": `Remove tag ${tag}`,
        onclick: () => change("DELETE", [tag]) }, "✕") : null)));
    fill(list, tags.length ? chips : h("p", { class: "muted" }, "No tags."));
  }

  async function change(method, tags, form = null) {
    showError(error, "");
    try {
      await api(method, `${C(rec)}/attributes/tags`, { body: { tags } });
    } catch (failure) {
      if (form) blame(form, error, failure); else showError(error, failure.message);
      return false;
    }
    await rec.sections.customer();
    return true;
  }
  return element;
}

// ---- contacts ------------------------------------------------------------------------------------

const CONTACT_FIELDS = [
  ["first_name", "First name"], ["last_name", "Last name"], ["title", "Title"], ["email", "Email address", "email"],
  ["phone", "Phone number"], ["linked_in", "LinkedIn"], ["twitter", "Twitter"],
];

function contactsCard(rec) {
  const add = rec.canWrite ? h("button", { type: "button", id: "add-contact" }, "Add contact") : null;
  const { element, body, error } = card("contacts", "Contacts", add);
  const formSlot = h("div");
  const list = h("div", { id: "contact-list" });
  // Contacts whose delete button asks "Delete?": kept across re-renders, so a live update
  // arriving between the two clicks does not silently take the question back.
  const armed = new Set();
  fill(body, formSlot, list);
  rec.sections.contacts = load;
  if (add) add.addEventListener("click", () => { if (!formSlot.firstChild) formSlot.append(contactForm()); });

  async function load() {
    try {
      const answer = await api("GET", `${C(rec)}/contacts`, { query: { per_page: 200 } });
      fill(list, answer.entries.length ? answer.entries.map(contact) : h("p", { class: "muted" }, "No contacts."));
    } catch (failure) {
      showError(error, `Contacts: ${failure.message}`);
    }
  }

  function contact(c) {
    const rows = [["Title", c.title], ["Email", c.email], ["Phone", c.phone], ["LinkedIn", c.linked_in],
      ["Twitter", c.twitter], ["Notes", c.notes], ...Object.entries(c.custom || {}).map(([k, v]) => [k, String(v)])]
      .filter(([, value]) => value);
    const item = h("div", { class: "contact", "data-uuid": c.uuid },
      h("div", { class: "spacer" }, h("div", { class: "who" }, fullName(c)),
        h("dl", {}, rows.map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]))));
    if (rec.canWrite) {
      const remove = h("button", { type: "button", class: "icon-button", "aria-label": `Delete contact ${fullName(c)}` }, "✕");
      const ask = () => {
        remove.dataset.armed = "yes";
        remove.textContent = "Delete?";
        remove.classList.add("danger");
      };
      if (armed.has(c.uuid)) ask();
      remove.addEventListener("click", async () => {
        if (remove.dataset.armed !== "yes") {
          armed.add(c.uuid);
          ask();
          return;
        }
        armed.delete(c.uuid);
        try {
          await api("DELETE", `/contacts/${encodeURIComponent(c.uuid)}`);
          await load();
        } catch (failure) {
          showError(error, `Delete contact: ${failure.message}`);
        }
      });
      item.append(remove);
    }
    return item;
  }

  function contactForm() {
    const sourceSelect = h("select", { name: "data_source_uuid" },
      (rec.customer.data_source_uuids || [rec.customer.data_source_uuid]).map((uuid) => {
        const source = rec.dataSources.find((s) => s.uuid === uuid);
        return h("option", { value: uuid }, source ? source.name : uuid);
      }));
    const inputs = Object.fromEntries(CONTACT_FIELDS.map(([name, , type]) => [name, h("input", { name, type: type || "text" })]));
    const notes = h("textarea", { name: "notes" });
    const customRows = h("div", { id: "contact-custom" });
    const formError = h("p", { class: "error", id: "contact-form-error" });
    const addCustom = () => customRows.append(h("div", { class: "inline-form" },
      h("input", { name: "custom", placeholder: "Attribute", "aria-label": "Custom attribute key", class: "custom-key" }),
      h("input", { placeholder: "Value", "aria-label": "Custom attribute value", class: "custom-value" })));
    const form = h("form", { class: "composer", id: "contact-form" },
      h("h3", {}, "New contact"),
      h("div", { class: "form-grid" },
        h("label", { class: "wide" }, "Source", sourceSelect),
        CONTACT_FIELDS.map(([name, label]) => h("label", {}, label, inputs[name])),
        h("label", { class: "wide" }, "Notes", notes),
        h("div", { class: "wide" }, h("h3", {}, "Custom attributes"), customRows,
          h("button", { type: "button", class: "link-button", onclick: addCustom }, "+ Add attribute"))),
      formError,
      h("div", { class: "dialog-actions" },
        h("button", { type: "button", onclick: () => form.remove() }, "Cancel"),
        h("button", { type: "submit", class: "primary", id: "save-contact" }, "Save")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const payload = { data_source_uuid: sourceSelect.value };
      for (const [name] of CONTACT_FIELDS) if (inputs[name].value.trim()) payload[name] = inputs[name].value.trim();
      if (notes.value.trim()) payload.notes = notes.value.trim();
      const custom = [...customRows.children].map((row) => ({ key: row.querySelector(".custom-key").value.trim(),
        value: row.querySelector(".custom-value").value })).filter((pair) => pair.key);
      if (custom.length) payload.custom = custom;
      try {
        await api("POST", `${C(rec)}/contacts`, { body: payload });
        form.remove();
        await load();
      } catch (failure) {
        blame(form, formError, failure);
      }
    });
    return form;
  }
  return element;
}

// ---- tasks ---------------------------------------------------------------------------------------

function tasksCard(rec) {
  const { element, body, error } = card("tasks", "Tasks");
  const list = h("div", { id: "task-list" });
  fill(body, list);
  rec.sections.tasks = load;
  if (rec.canWrite) {
    const details = h("input", { name: "task_details", placeholder: "What is to be done", "aria-label": "Task" });
    const assignee = h("input", { name: "assignee", type: "email", placeholder: "Assignee email", "aria-label": "Assignee" });
    const due = h("input", { name: "due_date", type: "date", "aria-label": "Due date" });
    const form = h("form", { class: "inline-form", id: "add-task" }, details, assignee, due, h("button", { type: "submit" }, "Add task"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showError(error, "");
      try {
        await api("POST", "/tasks", { body: { customer_uuid: rec.uuid, task_details: details.value, assignee: assignee.value,
          due_date: due.value ? `${due.value}T00:00:00Z` : null } });
        form.reset();
        await load();
      } catch (failure) {
        blame(form, error, failure);
      }
    });
    body.append(form);
  }

  async function load() {
    try {
      const answer = await api("GET", "/tasks", { query: { customer_uuid: rec.uuid, per_page: 100 } });
      const open = answer.entries.filter((t) => !t.completed_at);
      const done = answer.entries.filter((t) => t.completed_at);
      fill(list, open.length || done.length ? [...open, ...done].map(task) : h("p", { class: "muted" }, "No open tasks."));
    } catch (failure) {
      showError(error, `Tasks: ${failure.message}`);
    }
  }

  function task(t) {
    const box = h("input", { type: "checkbox", checked: Boolean(t.completed_at), disabled: !rec.canWrite,
      "aria-label": t.completed_at ? "Reopen task" : "Complete task" });
    box.addEventListener("change", async () => {
      try {
        await api("PATCH", `/tasks/${encodeURIComponent(t.task_uuid)}`, { body: { completed_at: box.checked ? new Date().toISOString() : null } });
        await load();
      } catch (failure) {
        showError(error, `Task: ${failure.message}`);
        box.checked = !box.checked;
      }
    });
    return h("div", { class: `task${t.completed_at ? " done" : ""}`, "data-uuid": t.task_uuid }, box,
      h("div", {}, h("div", { class: "text" }, t.task_details),
        h("div", { class: "muted" }, `${t.assignee} · due ${day(t.due_date)}`)));
  }
  return element;
}

// ---- opportunities -------------------------------------------------------------------------------

function opportunitiesCard(rec) {
  const add = rec.canWrite ? h("button", { type: "button", id: "add-opportunity" }, "Add opportunity") : null;
  const { element, body, error } = card("opportunities", "Opportunities", add);
  const formSlot = h("div");
  const list = h("div", { id: "opportunity-list" });
  fill(body, formSlot, list);
  rec.sections.opportunities = load;
  if (add) add.addEventListener("click", () => { if (!formSlot.firstChild) formSlot.append(form()); });

  async function load() {
    try {
      const answer = await api("GET", "/opportunities", { query: { customer_uuid: rec.uuid, per_page: 100 } });
      fill(list, answer.entries.length ? h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Pipeline"), h("th", {}, "Stage"), h("th", { class: "num" }, "Amount"),
          h("th", {}, "Close"), h("th", {}, "Forecast"))),
        h("tbody", {}, answer.entries.map((o) => h("tr", { "data-uuid": o.uuid },
          h("td", {}, o.pipeline), h("td", {}, o.pipeline_stage), h("td", { class: "num" }, money(o.amount_in_cents, o.currency)),
          h("td", {}, o.estimated_close_date), h("td", {}, o.forecast_category || ""))))) : h("p", { class: "muted" }, "No opportunities."));
    } catch (failure) {
      showError(error, `Opportunities: ${failure.message}`);
    }
  }

  function form() {
    const fields = [["owner", "Owner email", "email"], ["pipeline", "Pipeline"], ["pipeline_stage", "Stage"],
      ["estimated_close_date", "Estimated close", "date"], ["currency", "Currency"], ["amount", "Amount", "number"]];
    const inputs = Object.fromEntries(fields.map(([name, , type]) => [name, h("input", { name: name === "amount" ? "amount_in_cents" : name,
      type: type || "text", step: type === "number" ? "0.01" : undefined, value: name === "currency" ? rec.customer.currency || "USD" : "" })]));
    const formError = h("p", { class: "error" });
    const element = h("form", { class: "composer", id: "opportunity-form" },
      h("div", { class: "form-grid" }, fields.map(([name, label]) => h("label", {}, label, inputs[name]))), formError,
      h("div", { class: "dialog-actions" }, h("button", { type: "button", onclick: () => element.remove() }, "Cancel"),
        h("button", { type: "submit", class: "primary" }, "Save")));
    element.addEventListener("submit", async (event) => {
      event.preventDefault();
      const amount = inputs.amount.value === "" ? null : Math.round(Number(inputs.amount.value) * 100);
      try {
        await api("POST", "/opportunities", { body: { customer_uuid: rec.uuid, owner: inputs.owner.value, pipeline: inputs.pipeline.value,
          pipeline_stage: inputs.pipeline_stage.value, estimated_close_date: inputs.estimated_close_date.value || null,
          currency: inputs.currency.value, amount_in_cents: amount } });
        element.remove();
        await load();
      } catch (failure) {
        blame(element, formError, failure);
      }
    });
    return element;
  }
  return element;
}

// ---- activities ----------------------------------------------------------------------------------

const FEED_TYPES = [["event", "Events"], ["thread", "Threads"], ["note", "Notes"], ["call", "Calls"],
  ["mrr_movement", "MRR"], ["transaction", "Transactions"]];

function activitiesCard(rec) {
  const toggles = h("div", { class: "toggles", id: "activity-toggles" }, FEED_TYPES.map(([type, label]) =>
    h("button", { type: "button", "aria-pressed": "true", "data-type": type }, label)));
  const { element, body, error } = card("activities", "Activities", toggles);
  const list = h("ul", { class: "feed", id: "activity-feed" });
  const more = h("button", { type: "button", class: "link-button", id: "more-activities", hidden: true }, "Show more");
  let cursor = null;
  rec.sections.activities = () => load(false);

  if (rec.canWrite) {
    const noteButton = h("button", { type: "button", id: "add-note" }, "Add note");
    const callButton = h("button", { type: "button", id: "log-call" }, "Log a call");
    const composerSlot = h("div");
    body.append(h("div", { class: "inline-form" }, noteButton, callButton), composerSlot);
    noteButton.addEventListener("click", () => fill(composerSlot, composer("note")));
    callButton.addEventListener("click", () => fill(composerSlot, composer("call")));
  }
  body.append(list, more);

  for (const button of toggles.children) {
    button.addEventListener("click", () => {
      button.setAttribute("aria-pressed", String(button.getAttribute("aria-pressed") !== "true"));
      load(false);
    });
  }
  more.addEventListener("click", () => load(true));

  function types() {
    return [...toggles.children].filter((b) => b.getAttribute("aria-pressed") === "true").map((b) => b.dataset.type);
  }

  async function load(append) {
    const chosen = types();
    if (!chosen.length) { fill(list, h("li", { class: "muted" }, "Choose at least one type of activity.")); more.hidden = true; return; }
    try {
      const answer = await api("GET", `${C(rec)}/feed`, { query: { types: chosen.join(","), per_page: 25, cursor: append ? cursor : null } });
      const items = answer.entries.map((entry) => h("li", { "data-type": entry.type, "data-uuid": entry.uuid },
        h("span", { class: "kind" }, label(entry.type)),
        h("span", { class: "description" }, entry.description),
        h("span", { class: "when", title: exact(entry.date) }, relative(entry.date))));
      if (append) list.append(...items);
      else fill(list, items.length ? items : h("li", { class: "muted" }, "No activities yet."));
      cursor = answer.cursor;
      more.hidden = !answer.has_more;
      showError(error, "");
    } catch (failure) {
      showError(error, `Activities: ${failure.message}`);
    }
  }

  function composer(type) {
    const textArea = h("textarea", { name: "text", id: `${type}-text`, placeholder: type === "call" ? "What was said" : "Note" });
    const minutes = type === "call" ? h("input", { type: "number", min: "0", step: "1", name: "call_duration", id: "call-minutes",
      "aria-label": "Minutes", placeholder: "Minutes" }) : null;
    const author = h("input", { type: "email", name: "author_email", placeholder: "Your email (optional)", "aria-label": "Author email" });
    const formError = h("p", { class: "error", id: `${type}-error` });
    const form = h("form", { class: "composer", id: `${type}-form` }, h("h3", {}, type === "call" ? "Log a call" : "Add a note"), textArea,
      h("div", { class: "row" }, minutes, minutes ? "minutes" : null, author, h("span", { class: "spacer" }),
        h("button", { type: "button", onclick: () => form.remove() }, "Cancel"),
        h("button", { type: "submit", class: "primary", id: `save-${type}` }, "Save")),
      formError);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const payload = { customer_uuid: rec.uuid, type, text: textArea.value };
      if (author.value.trim()) payload.author_email = author.value.trim();
      if (minutes && minutes.value !== "") {
        const count = Number(minutes.value);
        payload.call_duration = Number.isInteger(count) ? count * 60 : minutes.value;
      }
      try {
        await api("POST", "/notes", { body: payload });
        form.remove();
        await load(false);
      } catch (failure) {
        blame(form, formError, failure);
      }
    });
    setTimeout(() => textArea.focus());
    return form;
  }
  return element;
}

function label(type) {
  return Object.fromEntries(FEED_TYPES)[type] || type;
}
