// jobs.js: every order, newest first, a page at a time (the node counts and slices;
// 10,000 orders page as fast as ten), filtered by state, buyer, provider or a label/id
// search, refreshed live when orders change.

import { get, live, query } from "./api.js";
import { h, replace, table, agr, price, cu, ms, when, badge, orderLink, providerLink, accountLink, ready } from "./dom.js";

const STATES = ["", "escrowed", "matched", "running", "verifying", "settled", "refunded"];
const PAGE = 50;

export async function jobs(main, { params }) {
  const filters = {
    state: params.get("state") || "",
    q: params.get("q") || "",
    buyer: params.get("buyer") || "",
    provider: params.get("provider") || "",
  };
  let offset = Number(params.get("offset") || 0);
  const results = h("div");
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });

  const state = h("select", { id: "f-state", name: "state" },
    STATES.map((s) => h("option", { value: s, selected: s === filters.state }, s || "any state")));
  const q = h("input", { id: "f-q", name: "q", type: "search", value: filters.q, placeholder: "label or id prefix" });
  const buyer = h("input", { id: "f-buyer", name: "buyer", value: filters.buyer, placeholder: "ag…" });
  const provider = h("input", { id: "f-provider", name: "provider", value: filters.provider, placeholder: "ag…" });
  const form = h("form", { class: "toolbar", role: "search", "aria-label": "Filter orders", onsubmit: (e) => {
    e.preventDefault();
    const next = { state: state.value, q: q.value.trim(), buyer: buyer.value.trim(), provider: provider.value.trim() };
    location.hash = `#/jobs${query(next)}`;
  } },
  h("label", { for: "f-state" }, "State", state),
  h("label", { for: "f-q" }, "Search", q),
  h("label", { for: "f-buyer" }, "Buyer", buyer),
  h("label", { for: "f-provider" }, "Provider", provider),
  h("button", { type: "submit" }, "Filter"));

  async function load() {
    const page = await get(`/v1/dashboard/orders${query({ ...filters, offset, limit: PAGE })}`);
    const pages = Math.max(1, Math.ceil(page.total / PAGE));
    const at = Math.floor(offset / PAGE) + 1;
    const go = (to) => { location.hash = `#/jobs${query({ ...filters, offset: to })}`; };
    replace(results,
      table(`Orders ${page.total ? offset + 1 : 0}–${offset + page.orders.length} of ${page.total}`, [
        { label: "Order" }, { label: "Label" }, { label: "State" }, { label: "Verification" },
        { label: "Buyer" }, { label: "Winner" }, { label: "Cap", num: true }, { label: "Price", num: true },
        { label: "Compute", num: true }, { label: "Cost", num: true }, { label: "Latency", num: true }, { label: "Created" },
      ], page.orders.map((o) => [
        orderLink(o.order_id), o.label, badge(o.state), `${o.verify}: ${o.verification}`, accountLink(o.buyer), providerLink(o.provider),
        price(o.max_price), price(o.price), cu(o.fuel_used), agr(o.cost), ms(o.latency_ms), when(o.created_ms),
      ]), "No orders match."),
      h("nav", { class: "pager", "aria-label": "Pages" },
        h("button", { type: "button", class: "secondary", disabled: offset <= 0, onclick: () => go(Math.max(0, offset - PAGE)) }, "← Newer"),
        h("span", null, `Page ${at} of ${pages}`),
        h("button", { type: "button", class: "secondary", disabled: offset + PAGE >= page.total, onclick: () => go(offset + PAGE) }, "Older →")));
    status.textContent = `${page.total} orders`;
  }

  replace(main, h("h1", null, "Jobs"), form, status, results);
  await load();
  ready(main);
  let pending = false;
  const off = live.on("order", () => {
    if (pending || offset > 0) return;
    pending = true;
    setTimeout(() => { load().catch(() => {}).finally(() => { pending = false; }); }, 500);
  });
  return off;
}
