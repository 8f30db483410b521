// A customer's record: the header (avatar, name, status, figures, the Re-sync / Merge / Delete
// menu), the Profile and Subscriptions tabs, and the live stream that keeps them current.
import { api, imageUrl } from "./api.js";
import { fill, h, showError } from "./dom.js";
import { exact, money, relative, showsSubscriberSince, statusClass } from "./format.js";
import { connectLive } from "./live.js";
import { renderProfile } from "./profile.js";
import { renderSubscriptions } from "./subscriptions.js";

const REFRESH_DELAY_MS = 150; // changes arriving together are fetched once

export function renderRecord({ main, me, navigate, onLeave }, uuid) {
  const rec = {
    uuid, me, navigate,
    canWrite: Boolean(me.can_write), canAdmin: Boolean(me.can_admin),
    customer: null, metrics: null, dataSources: [],
    sections: {},                     // name → loader (what a live change may ask to re-fetch)
    customerListeners: [],            // called with the customer whenever it is (re)loaded
    setCustomer(customer) {
      rec.customer = customer;
      for (const listener of rec.customerListeners) listener(customer);
    },
    async refresh(names) {
      await Promise.all(names.filter((name) => rec.sections[name]).map((name) => rec.sections[name]()));
    },
  };

  const banner = h("div", { id: "record-banner" });
  const header = h("section", { class: "record-header", id: "record-header" });
  const profileTab = h("button", { type: "button", role: "tab", id: "tab-profile", "aria-selected": "true" }, "Profile");
  const subscriptionsTab = h("button", { type: "button", role: "tab", id: "tab-subscriptions", "aria-selected": "false" },
    "Subscriptions");
  const profilePanel = h("div", { role: "tabpanel", id: "panel-profile" });
  const subscriptionsPanel = h("div", { role: "tabpanel", id: "panel-subscriptions", hidden: true });
  fill(main, banner, header, h("div", { class: "tabs", role: "tablist" }, profileTab, subscriptionsTab),
    profilePanel, subscriptionsPanel);

  function select(tab) {
    const profile = tab === "profile";
    profileTab.setAttribute("aria-selected", String(profile));
    subscriptionsTab.setAttribute("aria-selected", String(!profile));
    profilePanel.hidden = !profile;
    subscriptionsPanel.hidden = profile;
    if (!profile) rec.onShowSubscriptions?.();
  }
  profileTab.addEventListener("click", () => select("profile"));
  subscriptionsTab.addEventListener("click", () => select("subscriptions"));

  const headerView = buildHeader(rec, header, banner);
  rec.sections.customer = loadCustomer;
  rec.sections.metrics = headerView.loadMetrics;
  rec.sections.avatar = headerView.loadAvatar;

  // The newest revision (updated_at) a live change named: an answer older than it came from a
  // gateway copy not yet told of the change, and is asked again shortly.
  let wanted = null;
  let retries = 0;
  async function loadCustomer() {
    try {
      const { data, headers } = await api("GET", `/customers/${encodeURIComponent(uuid)}`, { withHeaders: true });
      rec.setCustomer(data);
      const revision = Date.parse((headers.get("ETag") || "").replace(/^W\//, "").replace(/"/g, ""));
      if (wanted && !Number.isNaN(revision) && revision < wanted && retries < 5) {
        retries += 1;
        setTimeout(loadCustomer, 200 * retries);
      } else {
        wanted = null;
        retries = 0;
      }
    } catch (failure) {
      if (failure.status === 404) {
        fill(banner, h("p", { class: "notice bad", id: "record-gone" },
          `This customer does not exist (or no longer does): ${failure.message} `,
          h("a", { href: "/app/", "data-nav": true }, "Back to the list")));
      } else {
        fill(banner, h("p", { class: "notice bad" }, `Could not load the customer: ${failure.message}`));
      }
    }
  }

  renderProfile(rec, profilePanel);
  renderSubscriptions(rec, subscriptionsPanel);

  (async () => {
    try {
      rec.dataSources = (await api("GET", "/data_sources")).data_sources || [];
    } catch { rec.dataSources = []; }
    await loadCustomer();
    if (!rec.customer) return;
    rec.refresh(["metrics", "avatar", "contacts", "activities", "tasks", "opportunities"]);
  })();

  // ---- live updates: what changed elsewhere is re-fetched within a second ----
  let pending = new Set();
  let timer = null;
  const stop = connectLive(uuid, {
    onChange(message) {
      if (message.merged_into) {
        fill(banner, h("p", { class: "notice", id: "record-merged" }, "This customer was merged into another. ",
          h("a", { href: `/app/customers/${encodeURIComponent(message.merged_into)}`, "data-nav": true },
            "Open the merged record")));
        return;
      }
      if (message.deleted) {
        fill(banner, h("p", { class: "notice bad", id: "record-deleted" }, "This customer was deleted. ",
          h("a", { href: "/app/", "data-nav": true }, "Back to the list")));
        return;
      }
      if (message.revision) {
        const revision = Date.parse(message.revision);
        if (!Number.isNaN(revision) && (!wanted || revision > wanted)) wanted = revision;
      }
      for (const name of message.refresh || []) pending.add(name);
      clearTimeout(timer);
      timer = setTimeout(() => {
        const names = [...pending];
        pending = new Set();
        rec.refresh(names);
      }, REFRESH_DELAY_MS);
    },
    onStatus: headerView.setLive,
  });
  onLeave(() => { stop(); clearTimeout(timer); headerView.dispose(); });
}

function buildHeader(rec, header, banner) {
  const avatar = h("img", { class: "avatar", id: "avatar", alt: "" });
  const name = h("h1", { id: "customer-name" }, "…");
  const status = h("span", { class: "status", id: "customer-status" });
  const live = h("span", { class: "live off", id: "live-state", title: "Live updates" }, "connecting");
  const figures = {
    mrr: h("span", { class: "value", id: "mrr-value" }, "—"),
    arr: h("span", { class: "value", id: "arr-value" }, "—"),
    net: h("span", { class: "value", id: "net-payments-value" }, "—"),
    since: h("span", { class: "value", id: "subscriber-since-value" }, "—"),
  };
  const sinceFigure = figure("Subscriber since", figures.since, "subscriber-since");
  const menuSlot = h("span", { class: "menu" });
  const nameEdit = h("span", { id: "name-edit-slot" });
  const nameError = h("p", { class: "error", id: "name-error" });
  fill(header, avatar,
    h("div", { class: "identity" },
      h("div", { class: "name-line" }, name, nameEdit, menuSlot),
      h("div", { class: "name-line" }, status, live),
      nameError),
    h("div", { class: "figures" },
      figure("MRR", figures.mrr, "mrr"), figure("ARR", figures.arr, "arr"),
      figure("Net payments", figures.net, "net-payments"), sinceFigure));
  let avatarUrl = null;

  function figure(label, value, key) {
    return h("div", { class: "figure", "data-figure": key }, h("span", { class: "label" }, label), value);
  }

  rec.customerListeners.push((customer) => {
    document.title = `${customer.name || "Customer"} · Roster`;
    name.textContent = customer.name || "(no name)";
    status.textContent = customer.status || "No status";
    status.className = statusClass(customer.status);
    // the customer JSON carries MRR and ARR too: show them at once, the metrics call adds net payments
    if (!rec.metrics) showFigures({ mrr: customer.mrr, arr: customer.arr, currency: customer.currency,
      status: customer.status, "customer-since": customer["customer-since"], net_payments: null });
    if (rec.canWrite && !nameEdit.firstChild) {
      nameEdit.append(h("button", { class: "icon-button", type: "button", id: "edit-name", "aria-label": "Edit name",
        title: "Edit name", onclick: editName }, "✎"));
    }
    if (rec.canWrite && !menuSlot.firstChild) menuSlot.append(buildMenu(rec, banner));
  });

  function editName() {
    const input = h("input", { id: "name-input", name: "name", value: rec.customer.name || "" });
    const save = async () => {
      showError(nameError, "");
      try {
        rec.setCustomer(await api("PATCH", `/customers/${encodeURIComponent(rec.uuid)}`, { body: { name: input.value } }));
        fill(nameEdit, h("button", { class: "icon-button", type: "button", id: "edit-name", "aria-label": "Edit name",
          title: "Edit name", onclick: editName }, "✎"));
        name.hidden = false;
      } catch (failure) {
        input.classList.add("invalid");
        showError(nameError, `Name: ${failure.message}`);
      }
    };
    name.hidden = true;
    fill(nameEdit, input,
      h("button", { class: "icon-button", type: "button", id: "save-name", "aria-label": "Save name", onclick: save }, "✓"),
      h("button", { class: "icon-button", type: "button", "aria-label": "Cancel", onclick: () => {
        name.hidden = false; showError(nameError, "");
        fill(nameEdit, h("button", { class: "icon-button", type: "button", id: "edit-name", "aria-label": "Edit name",
          title: "Edit name", onclick: editName }, "✎"));
      } }, "✕"));
    input.addEventListener("keydown", (event) => { if (event.key === "Enter") save(); });
    input.focus();
  }

  function showFigures(metrics) {
    const currency = metrics.currency || rec.customer?.currency || "USD";
    figures.mrr.textContent = money(metrics.mrr, currency);
    figures.arr.textContent = money(metrics.arr, currency);
    figures.net.textContent = metrics.net_payments === null ? "…" : money(metrics.net_payments, currency);
    const since = metrics["customer-since"];
    sinceFigure.hidden = !showsSubscriberSince(metrics.status, since);
    figures.since.textContent = since ? relative(since) : "—";
    figures.since.title = since ? exact(since) : "";
  }

  async function loadMetrics() {
    try {
      rec.metrics = await api("GET", `/customers/${encodeURIComponent(rec.uuid)}/metrics`);
      showFigures(rec.metrics);
    } catch (failure) {
      figures.net.textContent = "?";
      figures.net.title = `Could not load: ${failure.message}`;
    }
  }

  async function loadAvatar() {
    try {
      const url = await imageUrl(`/customers/${encodeURIComponent(rec.uuid)}/avatar`);
      if (avatarUrl) URL.revokeObjectURL(avatarUrl);
      avatarUrl = url;
      avatar.src = url;
      avatar.alt = `Avatar of ${rec.customer?.name || "the customer"}`;
    } catch { /* the grey square stays */ }
  }

  function setLive(state, detail) {
    live.className = `live ${state === "live" ? "on" : "off"}`;
    live.textContent = state === "live" ? "live" : state === "unavailable" ? "no live updates" : "reconnecting";
    live.title = detail || "Live updates";
  }

  return { loadMetrics, loadAvatar, setLive, dispose() { if (avatarUrl) URL.revokeObjectURL(avatarUrl); } };
}

function buildMenu(rec, banner) {
  const list = h("div", { class: "menu-list", id: "record-menu", role: "menu", hidden: true });
  const toggle = h("button", { type: "button", class: "icon-button", id: "record-menu-button", "aria-haspopup": "menu",
    "aria-label": "Customer actions", title: "Customer actions" }, "▾");
  const result = h("p", { class: "error", id: "menu-error" });
  toggle.addEventListener("click", () => { list.hidden = !list.hidden; });
  document.addEventListener("click", (event) => { if (!event.target.closest(".menu")) list.hidden = true; });

  const resync = h("button", { type: "button", role: "menuitem", id: "menu-resync" }, "Re-sync");
  resync.addEventListener("click", async () => {
    list.hidden = true;
    fill(banner);
    try {
      await api("POST", `/customers/${encodeURIComponent(rec.uuid)}/resync`);
      fill(banner, h("p", { class: "notice", id: "resync-result" },
        "Re-sync requested: the record updates here as the billing system's data arrives."));
    } catch (failure) {
      const why = failure.status === 404 && !failure.param && /URL/i.test(failure.message)
        ? "this server does not offer re-sync yet" : failure.message;
      fill(banner, h("p", { class: "notice bad", id: "resync-result" }, `Re-sync failed: ${why}`));
    }
  });
  const merge = h("button", { type: "button", role: "menuitem", id: "menu-merge" }, "Merge…");
  merge.addEventListener("click", () => { list.hidden = true; openMerge(rec); });
  list.append(resync, merge);
  if (rec.canAdmin) {
    const remove = h("button", { type: "button", role: "menuitem", id: "menu-delete", class: "danger-text" }, "Delete…");
    remove.addEventListener("click", () => { list.hidden = true; openDelete(rec); });
    list.append(remove);
  }
  return h("span", {}, toggle, list, result);
}

function openMerge(rec) {
  const search = h("input", { type: "search", id: "merge-search", placeholder: "Name, company or email" });
  const picks = h("div", { class: "pick-list", id: "merge-candidates" });
  const error = h("p", { class: "error", id: "merge-error" });
  const confirm = h("button", { class: "primary", type: "button", id: "merge-confirm", disabled: true }, "Merge");
  let chosen = null;
  const dialog = h("dialog", { id: "merge-dialog" },
    h("h2", {}, "Merge another customer into this one"),
    h("p", { class: "muted" }, "The other customer's external ids, contacts, notes and billing data move here; the other record goes away."),
    h("form", { class: "inline-form", onsubmit: (event) => { event.preventDefault(); find(); } },
      search, h("button", { type: "submit" }, "Find")),
    picks, error,
    h("div", { class: "dialog-actions" },
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), confirm));
  async function find() {
    showError(error, "");
    try {
      const answer = await api("GET", "/customers/find", { query: { q: search.value, per_page: 20 } });
      const others = answer.entries.filter((customer) => customer.uuid !== rec.uuid);
      fill(picks, others.map((customer) => h("button", { type: "button", "data-uuid": customer.uuid, onclick: (event) => {
        chosen = customer;
        for (const button of picks.children) button.classList.toggle("chosen", button === event.currentTarget);
        confirm.disabled = false;
        confirm.textContent = `Merge ${customer.name || customer.email || customer.uuid} into ${rec.customer.name || "this customer"}`;
      } }, `${customer.name || "(no name)"} · ${customer.email || customer.uuid}`)));
      if (!others.length) fill(picks, h("p", { class: "muted" }, "No other customer matches."));
    } catch (failure) {
      showError(error, failure.message);
    }
  }
  confirm.addEventListener("click", async () => {
    showError(error, "");
    try {
      await api("POST", "/customers/merges", { body: { from: { customer_uuid: chosen.uuid }, into: { customer_uuid: rec.uuid } } });
      dialog.close();
      rec.refresh(["customer", "metrics", "contacts", "activities", "tasks", "opportunities", "billing"]);
    } catch (failure) {
      showError(error, `Merge failed: ${failure.message}`);
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  search.focus();
}

function openDelete(rec) {
  const error = h("p", { class: "error", id: "delete-error" });
  const dialog = h("dialog", { id: "delete-dialog" },
    h("h2", {}, `Delete ${rec.customer.name || "this customer"}?`),
    h("p", {}, "The customer, its contacts, notes and billing data are deleted. Re-syncing the source restores a customer of a billing system."),
    error,
    h("div", { class: "dialog-actions" },
      h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"),
      h("button", { type: "button", class: "danger", id: "delete-confirm", onclick: async () => {
        try {
          await api("DELETE", `/customers/${encodeURIComponent(rec.uuid)}`);
          dialog.close();
          rec.navigate("/app/");
        } catch (failure) {
          showError(error, `Delete failed: ${failure.message}`);
        }
      } }, "Delete")));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}
