// How figures, dates and statuses read on the page.

export const LEAD_STATUSES = ["New Lead", "Working Lead", "Qualified Lead", "Unqualified Lead"];
export const ALL_STATUSES = [...LEAD_STATUSES, "Active", "Past Due", "Cancelled"];

/** Return cents as money, e.g. money(123456, "USD") → "$1,234.56". */
export function money(cents, currency = "USD") {
  const amount = (Number(cents) || 0) / 100;
  try {
    return new Intl.NumberFormat("en-US", { style: "currency", currency: currency || "USD" }).format(amount);
  } catch {
    return `${amount.toFixed(2)} ${currency || ""}`.trim();
  }
}

/** Return a signed amount for a movement: "+$10.00" or "−$5.00". */
export function signedMoney(cents, currency) {
  const value = Number(cents) || 0;
  return `${value > 0 ? "+" : value < 0 ? "−" : ""}${money(Math.abs(value), currency)}`;
}

function parse(value) {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** Return the exact moment in UTC: "2024-01-02 14:00:00 UTC" ("—" when none). */
export function exact(value) {
  const date = parse(value);
  return date ? `${date.toISOString().slice(0, 19).replace("T", " ")} UTC` : "—";
}

/** Return the calendar date in UTC: "2024-01-02". */
export function day(value) {
  const date = parse(value);
  return date ? date.toISOString().slice(0, 10) : "—";
}

/** Return how long ago (or ahead) a moment is: "3 months ago", "in 2 days". */
export function relative(value, now = new Date()) {
  const date = parse(value);
  if (!date) return "—";
  const seconds = (date.getTime() - now.getTime()) / 1000;
  const units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
  const format = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return format.format(Math.round(seconds / size), unit);
  }
  return "just now";
}

/** Return the value a datetime-local input shows for an ISO moment (in UTC). */
export function toInputMoment(value) {
  const date = parse(value);
  return date ? date.toISOString().slice(0, 16) : "";
}

/** Return the ISO moment (UTC) for what a datetime-local input holds; null when empty. */
export function fromInputMoment(text) {
  return text ? `${text.length === 16 ? `${text}:00` : text}Z` : null;
}

/** Return the CSS class of a status badge. */
export function statusClass(status) {
  if (status === "Active") return "status active";
  if (status === "Past Due") return "status past-due";
  if (status === "Cancelled") return "status cancelled";
  if (LEAD_STATUSES.includes(status)) return "status lead";
  return "status";
}

/** Subscriber since is shown only to subscribers (not leads, not cancelled ones). */
export function showsSubscriberSince(status, since) {
  return Boolean(since) && !LEAD_STATUSES.includes(status) && status !== "Cancelled";
}

export function fullName(contact) {
  return [contact.first_name, contact.last_name].filter(Boolean).join(" ") || contact.email || "(no name)";
}
