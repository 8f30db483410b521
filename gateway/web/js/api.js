// Every call goes to the gateway's /v1 API with the user's key as the HTTP Basic user name.
const KEY_NAME = "roster.apiKey";

export function apiKey() { return sessionStorage.getItem(KEY_NAME); }
export function setApiKey(key) { sessionStorage.setItem(KEY_NAME, key); }
export function forgetApiKey() { sessionStorage.removeItem(KEY_NAME); }

/** An error answered by the API: its status, message and the field it names (param). */
export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.param = body && typeof body.param === "string" ? body.param : null;
    this.body = body;
  }
}

function describe(status, body) {
  const message = body && typeof body.message === "string" && body.message ? body.message : null;
  if (status === 0) return "The server could not be reached.";
  if (status === 401) return message || "The API key was refused.";
  if (status === 403) return message || "This API key may not do that.";
  if (status === 404) return message || "Not found.";
  if (status >= 500) return message || `The server failed (HTTP ${status}).`;
  return message || `The request failed (HTTP ${status}).`;
}

function basic(key) {
  const bytes = new TextEncoder().encode(`${key}:`);
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return `Basic ${btoa(text)}`;
}

/** Return the path with its query string (values that are null, undefined or "" left out). */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== null && value !== undefined && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** Call `/v1{path}`; return the parsed JSON (null for an empty body); throw ApiError on failure. */
export async function api(method, path, { query, body, key, withHeaders } = {}) {
  const headers = { Accept: "application/json", Authorization: basic(key || apiKey() || "") };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(withQuery(`/v1${path}`, query), init);
  } catch (error) {
    throw new ApiError(0, { message: `The server could not be reached (${error.message}).` });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text.slice(0, 300) }; }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401 && !key) window.dispatchEvent(new CustomEvent("roster:unauthorized"));
    throw error;
  }
  return withHeaders ? { data, headers: response.headers } : data;
}

/** Return every entry of a paged list, following cursors (at most `limit` pages). */
export async function allPages(path, { query = {}, root = "entries", limit = 20 } = {}) {
  const entries = [];
  let cursor = null;
  for (let page = 0; page < limit; page += 1) {
    const answer = await api("GET", path, { query: { ...query, per_page: 200, cursor } });
    entries.push(...(answer[root] || []));
    if (!answer.has_more || !answer.cursor) break;
    cursor = answer.cursor;
  }
  return entries;
}

/** Return an object URL of an image the API serves (an <img> cannot send the key itself). */
export async function imageUrl(path) {
  const response = await fetch(`/v1${path}`, { headers: { Authorization: basic(apiKey() || "") }, cache: "no-cache" });
  if (!response.ok) throw new ApiError(response.status, null);
  return URL.createObjectURL(await response.blob());
}
