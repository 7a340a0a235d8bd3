// overview.js: the market at a glance — providers online, jobs running and settled per
// minute, compute units sold, utilization, the spot price index per class over time
// (chart), the ledger height and the last replay of the chain — updated every second
// from the dashboard event stream, and the latest orders.

import { get, live } from "./api.js";
import { lineChart } from "./chart.js";
import { h, replace, card, table, agr, price, cu, pct, when, badge, orderLink, providerLink, ready } from "./dom.js";

function verifyText(v) {
  if (!v) return "not checked yet";
  return v.verified ? `verified to #${v.height} (${v.txs} txs, ${v.took_ms} ms)` : `FAILED at #${v.height}: ${v.error || "conservation"}`;
}

function cards(stats) {
  return [
    card("Providers online", `${stats.providers_online} / ${stats.providers_known}`, "stat-providers"),
    card("Jobs running", String(stats.running), "stat-running"),
    card("Waiting for a provider", String(stats.waiting), "stat-waiting"),
    card("Settled / min", String(stats.settled_last_minute), "stat-settled-min"),
    card("Submitted / min", String(stats.submitted_last_minute), "stat-submitted-min"),
    card("Settled in all", String(stats.settled_total), "stat-settled"),
    card("Compute units sold", cu(stats.fuel_sold), "stat-cu"),
    card("Paid by buyers", agr(stats.paid_total), "stat-paid"),
    card("Utilization", pct(stats.utilization), "stat-util"),
    card("Ledger height", `#${stats.height}`, "stat-height"),
    card("Last chain replay", verifyText(stats.last_verify), "stat-verify"),
  ];
}

function indexTable(index) {
  const vwap = (i, w) => (i.windows.find((x) => x.window_ms === w) || {}).vwap;
  return table("Spot price index per resource class", [
    { label: "Class" }, { label: "Best ask", num: true }, { label: "Asks with room", num: true },
    { label: "1 min VWAP", num: true }, { label: "1 h VWAP", num: true },
  ], index.map((i) => [i.class, price(i.best_ask), String(i.depth_asks), price(vwap(i, 60000)), price(vwap(i, 3600000))]), "No classes yet.");
}

function chartSeries(history, samples) {
  const byClass = new Map();
  const add = (name, t, v) => {
    if (!byClass.has(name)) byClass.set(name, []);
    byClass.get(name).push([t, v / 1e9]);
  };
  for (const p of history) add(`${p.class} paid (VWAP per minute)`, Math.min(p.minute_ms + 30000, Date.now()), p.vwap);
  for (const [t, index] of samples) {
    for (const i of index) if (i.best_ask !== null && i.best_ask !== undefined) add(`${i.class} best ask`, t, i.best_ask);
  }
  return [...byClass].map(([name, points]) => ({ name, points }));
}

export async function overview(main) {
  const [stats, history, recent] = await Promise.all([
    get("/v1/dashboard/stats"),
    get("/v1/dashboard/prices?minutes=60"),
    get("/v1/dashboard/orders?limit=10"),
  ]);
  const samples = [[stats.at_ms, stats.index]];
  const grid = h("div", { class: "cards", "aria-live": "off" }, cards(stats));
  const index = h("div", null, indexTable(stats.index));
  const chart = h("div", null, lineChart("Price per CU over the last hour (AGR)", chartSeries(history, samples), (v) => v.toPrecision(3)));
  const latest = h("div");
  const drawLatest = (page) => replace(latest, table(`Latest orders (${page.total} in all)`, [
    { label: "Order" }, { label: "Label" }, { label: "State" }, { label: "Provider" }, { label: "Cost", num: true }, { label: "Created" },
  ], page.orders.map((o) => [orderLink(o.order_id), o.label, badge(o.state), providerLink(o.provider), agr(o.cost), when(o.created_ms)]), "No orders yet."));
  drawLatest(recent);
  replace(main,
    h("h1", null, "Market overview"),
    grid,
    h("h2", null, "Spot price index"), chart, index,
    h("h2", null, "Latest orders"), latest,
    h("p", { class: "muted" }, "Updates live from the node's event stream; nothing to refresh."));
  ready(main);

  let refreshing = false, lastSeconds = 0;
  const offStats = live.on("stats", (next) => {
    replace(grid, cards(next));
    replace(index, indexTable(next.index));
    samples.push([next.at_ms, next.index]);
    if (samples.length > 3600) samples.shift();
    const seconds = Math.floor(next.at_ms / 5000);
    if (seconds !== lastSeconds) {
      lastSeconds = seconds;
      get("/v1/dashboard/prices?minutes=60").then((h2) => { history.splice(0, history.length, ...h2); }).catch(() => {});
    }
    replace(chart, lineChart("Price per CU over the last hour (AGR)", chartSeries(history, samples), (v) => v.toPrecision(3)));
  });
  const offOrder = live.on("order", () => {
    if (refreshing) return;
    refreshing = true;
    setTimeout(() => {
      get("/v1/dashboard/orders?limit=10").then(drawLatest).catch(() => {}).finally(() => { refreshing = false; });
    }, 300);
  });
  return () => { offStats(); offOrder(); };
}
