// DOM helpers shared by the pages: elements, formats, state badges, tables, dialogs, notices.
// Everything is built with createElement/textContent: no server string is ever parsed as HTML.

import { svg } from "./charts.js";

/** h("a", {href: "#/x", class: "c"}, "text", child) -> element; `on*` attributes bind events. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// -- formats -------------------------------------------------------------

const num = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const sig = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 3 });

export const fmt = {
  num: (v) => (v === null || v === undefined ? "—" : num.format(v)),
  sig: (v) => (v === null || v === undefined ? "—" : sig.format(v)),
  pct: (f) => (f === null || f === undefined ? "—" : `${num.format(f * 100)} %`),
  bytes(v) {
    if (!v) return "0 B";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    const i = Math.min(units.length - 1, Math.floor(Math.log(v) / Math.log(1024)));
    return `${sig.format(v / 1024 ** i)} ${units[i]}`;
  },
  energy(joules) {
    if (joules === null || joules === undefined) return "—";
    const wh = joules / 3600;
    if (wh >= 1000) return `${sig.format(wh / 1000)} kWh`;
    return `${sig.format(wh)} Wh`;
  },
  carbon(grams) {
    if (grams === null || grams === undefined) return "—";
    return Math.abs(grams) >= 1000 ? `${sig.format(grams / 1000)} kg CO₂e` : `${sig.format(grams)} g CO₂e`;
  },
  power: (w) => (w === null || w === undefined ? "—" : `${sig.format(w)} W`),
  duration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
    const hours = Math.floor(s / 3600);
    if (hours < 48) return `${hours} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  },
  time(iso) {
    if (!iso) return "—";
    return new Date(iso).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit",
      minute: "2-digit", second: "2-digit" });
  },
  ago(iso, now = Date.now()) {
    if (!iso) return "—";
    return `${fmt.duration((now - Date.parse(iso)) / 1000)} ago`;
  },
};

export function seconds(from, to) {
  if (!from) return null;
  return ((to ? Date.parse(to) : Date.now()) - Date.parse(from)) / 1000;
}

/** <time datetime=...>text</time>, with the exact local time as a tooltip. */
export function timeEl(iso, text) {
  if (!iso) return "—";
  return h("time", { datetime: iso, title: new Date(iso).toLocaleString() }, text ?? fmt.time(iso));
}

// -- states: text + shape + colour (Okabe-Ito), never colour alone ---------

const SHAPES = {
  QUEUED: "clock", PLACED: "diamond", STARTING: "half", RUNNING: "play", PREEMPTED: "pause",
  SUCCEEDED: "check", FAILED: "cross", CANCELLED: "slash",
  ENROLLED: "ring", ONLINE: "dot", DRAINING: "half", CORDONED: "square", OFFLINE: "ring",
  LOST: "warn", REVOKED: "cross",
};

function shape(name) {
  const s = svg("svg", { viewBox: "0 0 12 12", width: 12, height: 12, "aria-hidden": "true",
    class: "icon" });
  const stroke = { fill: "none", stroke: "currentColor", "stroke-width": 1.8 };
  const parts = {
    dot: () => [svg("circle", { cx: 6, cy: 6, r: 5, fill: "currentColor" })],
    ring: () => [svg("circle", { cx: 6, cy: 6, r: 4.5, ...stroke })],
    half: () => [svg("circle", { cx: 6, cy: 6, r: 4.5, ...stroke }),
      svg("path", { d: "M6 1.5 A4.5 4.5 0 0 1 6 10.5 Z", fill: "currentColor" })],
    square: () => [svg("rect", { x: 1.5, y: 1.5, width: 9, height: 9, fill: "currentColor" })],
    diamond: () => [svg("path", { d: "M6 1 L11 6 L6 11 L1 6 Z", ...stroke })],
    play: () => [svg("path", { d: "M2.5 1.5 L10.5 6 L2.5 10.5 Z", fill: "currentColor" })],
    pause: () => [svg("rect", { x: 2, y: 1.5, width: 3, height: 9, fill: "currentColor" }),
      svg("rect", { x: 7, y: 1.5, width: 3, height: 9, fill: "currentColor" })],
    check: () => [svg("path", { d: "M1.5 6.5 L4.5 9.5 L10.5 2.5", ...stroke, "stroke-width": 2.2 })],
    cross: () => [svg("path", { d: "M2 2 L10 10 M10 2 L2 10", ...stroke, "stroke-width": 2.2 })],
    slash: () => [svg("circle", { cx: 6, cy: 6, r: 4.5, ...stroke }),
      svg("path", { d: "M2.8 9.2 L9.2 2.8", ...stroke })],
    clock: () => [svg("circle", { cx: 6, cy: 6, r: 4.5, ...stroke }),
      svg("path", { d: "M6 3 L6 6 L8.5 7.5", ...stroke })],
    warn: () => [svg("path", { d: "M6 1 L11.5 11 L0.5 11 Z", fill: "currentColor" }),
      svg("rect", { x: 5.3, y: 4, width: 1.4, height: 4, fill: "#fff" })],
  };
  s.append(...(parts[name] || parts.ring)());
  return s;
}

export function badge(state) {
  return h("span", { class: `badge state-${state}`, dataset: { state } },
    shape(SHAPES[state] || "ring"), h("span", {}, state));
}

export function flag(text, kind = "estimated", title = "") {
  return h("span", { class: `flag flag-${kind}`, title: title || null }, text);
}

// -- tables ---------------------------------------------------------------

/**
 * A real <table> in a scrollable, focusable region: <caption>, <th scope>, sortable headers
 * (buttons with aria-sort), one row per item; Arrow Up/Down move between the rows' links.
 * columns: [{key, label, cell(row) -> node|text, sort(row) -> value, rowHeader, className}]
 */
export function table({ caption, columns, rows, rowKey, sort, onSort, empty = "Nothing here.",
  id }) {
  const captionId = `${id || "t"}-caption`;
  const sorted = [...rows];
  const col = columns.find((c) => c.key === sort?.key && c.sort);
  if (col) {
    const dir = sort.dir === "desc" ? -1 : 1;
    sorted.sort((a, b) => {
      const [x, y] = [col.sort(a), col.sort(b)];
      return (x > y ? 1 : x < y ? -1 : 0) * dir;
    });
  }
  const head = h("tr", { role: "row" }, columns.map((c) => {
    const active = sort?.key === c.key;
    const ariaSort = active ? (sort.dir === "desc" ? "descending" : "ascending") : null;
    const label = c.sort && onSort
      ? h("button", { type: "button", class: "sort", dataset: { key: `sort:${id}:${c.key}` },
        onclick: () => onSort({ key: c.key, dir: active && sort.dir === "asc" ? "desc" : "asc" }) },
      c.label, h("span", { "aria-hidden": "true", class: "sort-mark" },
        active ? (sort.dir === "desc" ? " ▼" : " ▲") : ""))
      : c.label;
    return h("th", { scope: "col", role: "columnheader", "aria-sort": ariaSort, class: c.className },
      label);
  }));
  // Explicit roles keep the table semantics when the phone layout restyles rows as blocks.
  const body = h("tbody", { role: "rowgroup", onkeydown: rowKeys });
  for (const row of sorted) {
    body.append(h("tr", { role: "row", dataset: { row: rowKey(row) } }, columns.map((c) =>
      h(c.rowHeader ? "th" : "td", { scope: c.rowHeader ? "row" : null,
        role: c.rowHeader ? "rowheader" : "cell", class: c.className,
        dataset: { label: c.label } }, h("div", { class: "cell" }, c.cell(row))))));
  }
  if (sorted.length === 0) {
    body.append(h("tr", { role: "row" }, h("td", { role: "cell", colspan: columns.length,
      class: "empty" }, empty)));
  }
  const tableEl = h("table", { id, role: "table" },
    h("caption", { id: captionId }, caption), h("thead", { role: "rowgroup" }, head), body);
  return h("div", { class: "table-wrap", role: "region", tabindex: "0",
    "aria-labelledby": captionId }, tableEl);
}

function rowKeys(event) {
  const keys = { ArrowDown: 1, ArrowUp: -1, Home: "first", End: "last" };
  if (!(event.key in keys) || !(event.target instanceof HTMLElement)) return;
  const row = event.target.closest("tr");
  const cell = event.target.closest("td, th");
  if (!row || !cell) return;
  const rows = [...row.parentElement.children];
  const step = keys[event.key];
  const index = step === "first" ? 0 : step === "last" ? rows.length - 1
    : rows.indexOf(row) + step;
  const target = rows[index];
  if (!target) return;
  const column = [...row.children].indexOf(cell);
  const focusable = target.children[column]?.querySelector("a, button")
    || target.querySelector("a, button");
  if (focusable) {
    event.preventDefault();
    focusable.focus();
  }
}

// -- rendering without losing the reader's place --------------------------

/** Replace `container`'s children, keeping focus on the element with the same data-key. */
export function replace(container, ...children) {
  const active = document.activeElement;
  const inside = active && active !== container && container.contains(active);
  const key = inside ? active.dataset.key || (active.id && `#${active.id}`) : null;
  const scrolls = [...container.querySelectorAll(".table-wrap")].map((w) => w.scrollLeft);
  container.replaceChildren();
  append(container, children);
  [...container.querySelectorAll(".table-wrap")].forEach((w, i) => {
    if (scrolls[i]) w.scrollLeft = scrolls[i];
  });
  if (key && document.activeElement !== active) {
    const again = key.startsWith("#") ? container.querySelector(`#${CSS.escape(key.slice(1))}`)
      : container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

// -- notices and confirmations ----------------------------------------------

/** Show and announce (aria-live) a short message: kind = info | ok | error. */
export function notify(message, kind = "info") {
  const box = document.getElementById("notice");
  box.className = `notice notice-${kind}`;
  box.textContent = message;
  box.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 15000 : 6000);
}

/**
 * Ask before an action, in a modal <dialog>; resolves to {reason} or null when declined.
 * The optional reason goes to the API with the action (it lands in the audit log).
 */
export function confirmAction({ title, message, confirmLabel, danger = true }) {
  const dialog = document.getElementById("confirm");
  const form = dialog.querySelector("form");
  dialog.querySelector("#confirm-title").textContent = title;
  dialog.querySelector("#confirm-message").textContent = message;
  const ok = dialog.querySelector("#confirm-ok");
  ok.textContent = confirmLabel;
  ok.className = danger ? "danger" : "primary";
  const reason = dialog.querySelector("#confirm-reason");
  reason.value = "";
  return new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      done(event.submitter === ok ? { reason: reason.value.trim() || null } : null);
    };
    const onClose = () => done(null);
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    reason.focus();
  });
}
