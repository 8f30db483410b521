// The Subscriptions tab: MRR chart, subscriptions, MRR movements, revenue recognition schedule
// and transactions. Loaded when the tab is first shown, then kept current by live changes.
import { allPages, api } from "./api.js";
import { fill, h, showError } from "./dom.js";
import { mrrChart } from "./chart.js";
import { day, money, signedMoney } from "./format.js";

export function renderSubscriptions(rec, panel) {
  const sections = {
    chart: section("mrr-section", "Monthly Recurring Revenue"),
    subscriptions: section("subscriptions-section", "Subscriptions"),
    movements: section("movements-section", "MRR Movements"),
    revenue: section("revenue-section", "Revenue Recognition Schedule"),
    transactions: section("transactions-section", "Transactions"),
  };
  fill(panel, Object.values(sections).map((s) => s.element));
  let chart = null;
  let loaded = false;
  let shown = false;

  rec.onShowSubscriptions = () => {
    shown = true;
    if (!loaded) load(); else chart?.draw();
  };
  rec.sections.billing = async () => { if (loaded || shown) await load(); };
  window.addEventListener("resize", () => { if (shown && !panel.hidden) chart?.draw(); });

  async function load() {
    loaded = true;
    const uuid = encodeURIComponent(rec.uuid);
    const currency = rec.customer?.currency || "USD";
    await Promise.all([
      guard(sections.chart, async () => {
        const movements = await allPages(`/customers/${uuid}/activities`);
        if (!chart) chart = mrrChart(sections.chart.body, { currency });
        chart.set(movements);
        fillMovements(movements, currency);
      }),
      guard(sections.subscriptions, async () => {
        const entries = await allPages(`/customers/${uuid}/subscriptions`);
        fill(sections.subscriptions.body, table("subscriptions-table",
          ["Plan", "Quantity", "MRR", "ARR", "Status", "Billing cycle", "Started", "Ends"],
          entries.map((s) => [s.plan || s.external_id, s.quantity, money(s.mrr, s.currency), money(s.arr, s.currency), s.status,
            s["billing-cycle"] ? `${s["billing-cycle-count"] || 1} ${s["billing-cycle"]}` : "—", day(s["start-date"]),
            s["end-date"] ? day(s["end-date"]) : "—"]), [1, 2, 3], "No subscriptions."));
      }),
      guard(sections.revenue, async () => {
        const schedule = await api("GET", `/customers/${uuid}/revenue_schedule`);
        fill(sections.revenue.body, table("revenue-table", ["Month", "Recognized", "Deferred"],
          (schedule.entries || []).map((m) => [m.month, money(m.recognized, schedule.currency), money(m.deferred, schedule.currency)]),
          [1, 2], "No revenue recognized yet."));
      }),
      guard(sections.transactions, async () => {
        const invoices = await allPages(`/import/customers/${uuid}/invoices`, { root: "invoices" });
        const rows = invoices.flatMap((invoice) => (invoice.transactions || []).map((t) => ({ ...t, invoice })))
          .sort((a, b) => (a.date < b.date ? 1 : -1))
          .map((t) => [day(t.date), t.type, t.result, money(t.amount_in_cents ?? t.invoice.total_in_cents, t.invoice.currency),
            t.invoice.external_id]);
        fill(sections.transactions.body, table("transactions-table", ["Date", "Type", "Result", "Amount", "Invoice"], rows, [3],
          "No transactions."));
      }),
    ]);
  }

  function fillMovements(movements, currency) {
    const sorted = [...movements].sort((a, b) => (a.date < b.date ? 1 : -1));
    fill(sections.movements.body, table("movements-table", ["Date", "Type", "Description", "Movement", "MRR after"],
      sorted.map((m) => [day(m.date), m.type, m.description,
        h("span", { class: m["activity-mrr-movement"] >= 0 ? "movement-up" : "movement-down" },
          signedMoney(m["activity-mrr-movement"], m.currency || currency)),
        money(m["activity-mrr"], m.currency || currency)]), [3, 4], "No MRR movements."));
  }
}

function section(id, title) {
  const body = h("div", { class: "card-body" }, h("p", { class: "muted" }, "Loading…"));
  const error = h("p", { class: "error", id: `${id}-error` });
  return { element: h("section", { class: "card", id }, h("h2", {}, title), error, body), body, error };
}

async function guard(part, work) {
  showError(part.error, "");
  try { await work(); } catch (failure) { showError(part.error, failure.message); }
}

function table(id, headings, rows, numeric, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("table", { id },
    h("thead", {}, h("tr", {}, headings.map((title, index) => h("th", { class: numeric.includes(index) ? "num" : null }, title)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, index) =>
      h("td", { class: numeric.includes(index) ? "num" : null }, cell ?? "—"))))));
}
