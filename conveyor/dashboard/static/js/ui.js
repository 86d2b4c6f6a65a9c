// Small DOM helpers: elements built with text (never HTML strings from data), formatting,
// tables, pagers, the toast and the confirmation dialog.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// el's children replaced by these; null, undefined and false are left out (the DOM's own
// replaceChildren would show them as text: "null").
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function number(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/Z$/, " UTC");
}

export function ago(iso) {
  if (!iso) return "–";
  return duration((Date.now() - new Date(iso).getTime()) / 1000) + " ago";
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function badge(status) {
  return h("span", { class: `badge status-${status}` }, status);
}

export function progressBar(percent, label) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  const fill = h("div", { class: "fill" });
  fill.style.width = `${value.toFixed(1)}%`; // through the CSSOM: no inline style attribute (CSP)
  return h(
    "div",
    { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": value.toFixed(0), "aria-label": label || "progress" },
    fill,
    h("span", { class: "bar-text" }, `${value.toFixed(value < 10 && value > 0 ? 1 : 0)}%`),
  );
}

// `sort` ({ key, descending, by(key) }): columns with a `sortKey` get a button in their header
// that sorts by it (again: the other way), and the sorted one says so in aria-sort.
export function table(columns, rows, { caption, empty = "Nothing to show.", sort } = {}) {
  const header = (c) => {
    if (!sort || !c.sortKey) return h("th", { scope: "col" }, c.title);
    const current = sort.key === c.sortKey;
    const arrow = current ? (sort.descending ? " ▼" : " ▲") : "";
    return h(
      "th",
      { scope: "col", "aria-sort": current ? (sort.descending ? "descending" : "ascending") : "none" },
      h("button", { type: "button", class: "sort", onclick: () => sort.by(c.sortKey) }, c.title, h("span", { "aria-hidden": "true" }, arrow)),
    );
  };
  const head = h("thead", {}, h("tr", {}, columns.map(header)));
  const body = h("tbody");
  if (!rows.length) body.append(h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, empty)));
  for (const row of rows) body.append(h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.cell(row)))));
  return h("table", {}, caption ? h("caption", {}, caption) : null, head, body);
}

export function section(title, ...children) {
  const id = "s-" + title.toLowerCase().replace(/[^a-z0-9]+/g, "-");
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

export function errorBox(failure) {
  return h("p", { class: "error", role: "alert" }, failure.message || String(failure));
}

let toastTimer = null;
export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = `show ${kind}`;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (el.className = ""), 5000);
}

export function confirmDialog(text, yes = "Yes") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = yes;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

export function pretty(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}
