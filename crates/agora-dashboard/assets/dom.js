// dom.js: the one way pages build markup, and the formatters they share.
//
// `h()` creates elements and puts every string in as a text node (textContent), so a
// label, argument, log line or provider attribute is always shown as text and can never
// become markup or script. Attributes are set one by one; event handlers only from
// functions; `style` and `on…` strings are refused.

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) {
      if (typeof value === "function") el.addEventListener(key.slice(2), value);
      continue;
    }
    if (key === "style") continue;
    if (key === "class") el.setAttribute("class", String(value));
    else if (key === "value" && "value" in el) el.value = String(value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Appends children: nodes, strings (as text), numbers, arrays; skips null/false. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h("a", {href: "#/jobs"}, "Jobs"). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces an element's content. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export const BASE_PER_AGR = 1e9;
export const FUEL_PER_CU = 1e9;

/** Base units as AGR text, e.g. 20000000 → "0.02 AGR". */
export function agr(base) {
  if (base === null || base === undefined) return "—";
  const n = Number(base) / BASE_PER_AGR;
  return `${trim(n)} AGR`;
}

/** A price in base units per CU as AGR/CU. */
export function price(base) {
  if (base === null || base === undefined) return "—";
  return `${trim(Number(base) / BASE_PER_AGR)} AGR/CU`;
}

/** Fuel as compute units. */
export function cu(fuel) {
  if (fuel === null || fuel === undefined) return "—";
  return `${trim(Number(fuel) / FUEL_PER_CU)} CU`;
}

export function trim(n) {
  if (!Number.isFinite(n)) return "—";
  if (n === 0) return "0";
  if (Math.abs(n) < 1e-6) return n.toExponential(2);
  const digits = Math.abs(n) >= 1 ? 4 : 9;
  return String(Number(n.toFixed(digits)));
}

export function ms(value) {
  if (value === null || value === undefined) return "—";
  return value < 1000 ? `${value} ms` : `${trim(value / 1000)} s`;
}

export function when(unixMs) {
  if (!unixMs) return "—";
  return new Date(unixMs).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

export function short(id) {
  const text = String(id ?? "");
  return text.length > 14 ? `${text.slice(0, 10)}…` : text;
}

export function pct(x) {
  return `${(Number(x) * 100).toFixed(1)} %`;
}

export function badge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

/** A link to an id with the full id in its accessible name. */
export function idLink(href, id, what) {
  return h("a", { href, class: "mono", "aria-label": `${what} ${id}`, title: id }, short(id));
}

export function orderLink(id) {
  return idLink(`#/job/${id}`, id, "order");
}

export function accountLink(id) {
  return id ? idLink(`#/ledger/account/${id}`, id, "account") : "—";
}

export function providerLink(id) {
  return id ? idLink(`#/provider/${id}`, id, "provider") : "—";
}

/** A table inside a scrolling wrapper. cols: [{label, num?}], rows: arrays of cells. */
export function table(caption, cols, rows, empty = "Nothing yet.") {
  const head = h("tr", null, cols.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.length
    ? rows.map((r) => h("tr", null, r.map((cell, i) => h("td", { class: cols[i] && cols[i].num ? "num" : null }, cell))))
    : [h("tr", null, h("td", { colspan: cols.length, class: "muted" }, empty))];
  return h("div", { class: "scroll" }, h("table", null, h("caption", null, caption), h("thead", null, head), h("tbody", null, body)));
}

/** A definition list of [key, value] pairs. */
export function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", null, k), h("dd", null, v)]));
}

export function card(label, value, id) {
  return h("div", { class: "card" }, h("span", { class: "k" }, label), h("span", { class: "v", id }, value));
}

/** Shows an error in the alert region for a few seconds. */
export function notify(message) {
  const box = document.getElementById("notice");
  if (!box) return;
  replace(box, String(message));
  box.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { box.hidden = true; }, 8000);
}

/** Marks the page as painted with data (the browser tests and the bench wait for it). */
export function ready(main) {
  main.dataset.ready = "1";
  document.documentElement.dataset.readyMs = performance.now().toFixed(1);
}
