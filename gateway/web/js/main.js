// The page's entry: asks for the API key once (kept in sessionStorage), then routes
// /app/ to the customer list and /app/customers/{uuid} to the record.
import { api, apiKey, forgetApiKey, setApiKey } from "./api.js";
import { fill, h, showError } from "./dom.js";
import { renderList } from "./list.js";
import { renderRecord } from "./record.js";

const main = document.getElementById("main");
const session = { me: null, leave: null };

export function navigate(path) {
  if (path !== location.pathname + location.search) history.pushState({}, "", path);
  route();
}

async function route() {
  if (session.leave) { session.leave(); session.leave = null; }
  if (!apiKey()) { askForKey(); return; }
  if (!session.me) {
    try {
      session.me = await api("GET", "/me");
    } catch (error) {
      if (error.status === 401) { forgetApiKey(); askForKey(error.message); return; }
      fill(main, h("p", { class: "notice bad" }, `Could not reach the API: ${error.message}`));
      return;
    }
    showWho();
  }
  const match = location.pathname.match(/^\/app\/customers\/([^/]+)\/?$/);
  const context = { main, me: session.me, navigate, onLeave: (fn) => { session.leave = fn; } };
  if (match) renderRecord(context, decodeURIComponent(match[1]));
  else renderList(context);
}

function showWho() {
  const who = document.getElementById("whoami");
  const mode = session.me.can_write ? "can edit" : "read only";
  who.textContent = `Key role: ${session.me.role} (${mode})`;
  who.dataset.role = session.me.role;
  document.getElementById("forget-key").hidden = false;
}

function askForKey(problem) {
  const input = h("input", { type: "password", id: "api-key", name: "api-key", autocomplete: "off",
    placeholder: "API key", required: true });
  const error = h("p", { class: "error", id: "api-key-error" });
  const form = h("form", { class: "card key-form", id: "key-form" },
    h("h2", {}, "Your API key"),
    h("p", { class: "muted" }, "The page calls the Roster API with it. It stays in this browser tab only."),
    input, error,
    h("button", { class: "primary", type: "submit" }, "Continue"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    showError(error, "");
    try {
      session.me = await api("GET", "/me", { key });
    } catch (failure) {
      showError(error, failure.message);
      input.classList.add("invalid");
      return;
    }
    setApiKey(key);
    showWho();
    route();
  });
  fill(main, form);
  showError(error, problem);
  input.focus();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-nav]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});
document.getElementById("forget-key").addEventListener("click", () => {
  forgetApiKey();
  session.me = null;
  document.getElementById("whoami").textContent = "";
  document.getElementById("forget-key").hidden = true;
  route();
});
window.addEventListener("roster:unauthorized", () => {
  forgetApiKey();
  session.me = null;
  askForKey("The API key was refused; enter it again.");
});
window.addEventListener("popstate", route);
route();
