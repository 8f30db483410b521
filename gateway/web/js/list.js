// The customer list: search by name, company or email, a status filter, cursor paging.
import { api } from "./api.js";
import { fill, h, showError } from "./dom.js";
import { ALL_STATUSES, money, statusClass } from "./format.js";

const PER_PAGE = 25;

export function renderList({ main }) {
  const params = new URLSearchParams(location.search);
  const state = { q: params.get("q") || "", status: params.get("status") || "", cursors: [null], page: 0 };

  const search = h("input", { type: "search", id: "customer-search", placeholder: "Search by name, company or email",
    value: state.q, "aria-label": "Search customers" });
  const status = h("select", { id: "status-filter", "aria-label": "Status" },
    h("option", { value: "" }, "Any status"),
    ALL_STATUSES.map((name) => h("option", { value: name, selected: name === state.status }, name)));
  const error = h("p", { class: "error", id: "list-error" });
  const body = h("tbody");
  const summary = h("span", { class: "muted", id: "list-summary" });
  const previous = h("button", { type: "button", id: "previous-page", disabled: true }, "← Previous");
  const next = h("button", { type: "button", id: "next-page", disabled: true }, "Next →");
  const form = h("form", { class: "list-controls", role: "search" }, search, status,
    h("button", { class: "primary", type: "submit" }, "Search"));

  fill(main,
    h("div", { class: "card-head" }, h("h1", {}, "Customers")),
    form, error,
    h("div", { class: "card" },
      h("table", { id: "customer-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Email"), h("th", {}, "Company"),
          h("th", {}, "Status"), h("th", { class: "num" }, "MRR"))),
        body),
      h("div", { class: "pager" }, previous, next, summary)));

  async function load() {
    showError(error, "");
    const cursor = state.cursors[state.page];
    const query = { status: state.status, per_page: PER_PAGE, cursor };
    let answer;
    try {
      answer = state.q
        ? await api("GET", "/customers/find", { query: { ...query, q: state.q } })
        : await api("GET", "/customers", { query });
    } catch (failure) {
      showError(error, failure.param === "status" ? `Status filter: ${failure.message}` : failure.message);
      return;
    }
    fill(body, answer.entries.map(row));
    if (!answer.entries.length) {
      body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" },
        answer.has_more ? "No match among the customers read so far; try Next to read on." : "No customers found.")));
    }
    state.cursors[state.page + 1] = answer.has_more ? answer.cursor : undefined;
    next.disabled = !answer.has_more;
    previous.disabled = state.page === 0;
    summary.textContent = `Page ${state.page + 1}`;
  }

  function row(customer) {
    const href = `/app/customers/${encodeURIComponent(customer.uuid)}`;
    return h("tr", { "data-uuid": customer.uuid },
      h("td", {}, h("a", { href, "data-nav": true, class: "customer-link" }, customer.name || "(no name)")),
      h("td", {}, customer.email || ""),
      h("td", {}, customer.company || ""),
      h("td", {}, h("span", { class: statusClass(customer.status) }, customer.status || "—")),
      h("td", { class: "num" }, money(customer.mrr, customer.currency)));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.q = search.value.trim();
    state.status = status.value;
    state.cursors = [null];
    state.page = 0;
    const query = new URLSearchParams();
    if (state.q) query.set("q", state.q);
    if (state.status) query.set("status", state.status);
    history.replaceState({}, "", `/app/${query.toString() ? `?${query}` : ""}`);
    load();
  });
  status.addEventListener("change", () => form.requestSubmit());
  next.addEventListener("click", () => { state.page += 1; load(); });
  previous.addEventListener("click", () => { state.page = Math.max(0, state.page - 1); load(); });
  load();
}
