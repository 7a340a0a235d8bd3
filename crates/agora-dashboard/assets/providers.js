// providers.js: every provider's hardware, asks, stake, reputation, jobs served and
// earnings; one provider's page adds its reputation history (outcomes of the jobs it
// served, and the score sampled while the page is open) and a profitability calculator
// (power draw, electricity price, utilization → net earnings per day at the index).

import { get, live } from "./api.js";
import { lineChart } from "./chart.js";
import { h, replace, table, kv, agr, price, trim, when, badge, orderLink, providerLink, ready, cu } from "./dom.js";

const GIB = 2 ** 30;

function hardware(asks) {
  return asks.map((a) => {
    const c = a.capacity;
    const gpus = (c.gpus || []).map((g) => `${g.count || 1}× ${g.model || "gpu"}`).join(", ");
    return `${trim(c.cpu_millis / 1000)} cores, ${trim(c.memory_bytes / GIB)} GiB, ${a.arch}${gpus ? `, ${gpus}` : ""}`;
  }).join("; ") || "—";
}

function attributes(asks) {
  const pairs = new Map();
  for (const a of asks) for (const [k, v] of Object.entries(a.attributes || {})) if (k !== "agora.provider") pairs.set(k, v);
  return [...pairs].map(([k, v]) => `${k}=${v}`).join(", ") || "—";
}

function prices(asks) {
  return asks.flatMap((a) => Object.entries(a.prices || {}).map(([cls, p]) => `${cls}: ${price(p)}`)).join("; ") || "—";
}

function online(p, now) {
  return p.asks.some((a) => a.expires_ms > now);
}

export async function providers(main) {
  const list = await get("/v1/providers");
  const now = Date.now();
  replace(main, h("h1", null, "Providers"),
    table(`${list.length} providers`, [
      { label: "Provider" }, { label: "Status" }, { label: "Hardware" }, { label: "Attributes" }, { label: "Asks" },
      { label: "Stake", num: true }, { label: "Reputation", num: true }, { label: "Served", num: true }, { label: "Failed", num: true },
      { label: "Running", num: true }, { label: "Earned", num: true },
    ], list.map((p) => [
      providerLink(p.account), online(p, now) ? h("span", { class: "badge ok" }, "online") : h("span", { class: "badge" }, "offline"),
      hardware(p.asks), attributes(p.asks), prices(p.asks), agr(p.stake), `${trim(p.reputation)} (±${trim(1 - p.confidence)})`,
      String(p.completed), String(p.failed), String(p.running), agr(p.earned),
    ]), "No provider has offered capacity yet."));
  ready(main);
  return null;
}

function calculator(p, index, info, reference) {
  const cores = Math.max(1, Math.round(p.asks.reduce((n, a) => n + a.capacity.cpu_millis, 0) / 1000)) || 1;
  const cpu = index.find((i) => i.class === "cpu") || {};
  const vwap = ((cpu.windows || []).find((w) => w.window_ms === 3600000) || {}).vwap;
  const ask = p.asks.map((a) => (a.prices || {}).cpu).find((x) => x);
  const startPrice = (vwap || cpu.best_ask || ask || 0) / 1e9;
  const inputs = {
    watts: h("input", { id: "calc-watts", type: "number", min: 0, step: "any", value: 150 }),
    kwh: h("input", { id: "calc-kwh", type: "number", min: 0, step: "any", value: 0.15 }),
    util: h("input", { id: "calc-util", type: "number", min: 0, max: 100, step: "any", value: 50 }),
    cores: h("input", { id: "calc-cores", type: "number", min: 1, step: 1, value: cores }),
    price: h("input", { id: "calc-price", type: "number", min: 0, step: "any", value: startPrice }),
    usd: h("input", { id: "calc-usd", type: "number", min: 0, step: "any", value: reference.usd_per_agr }),
  };
  const out = h("output", { id: "calc-out", for: Object.values(inputs).map((i) => i.id).join(" "), "aria-live": "polite" });
  const compute = () => {
    const n = (el) => Math.max(0, Number(el.value) || 0);
    const cuPerDay = n(inputs.cores) * (n(inputs.util) / 100) * 86400;
    const grossAgr = cuPerDay * n(inputs.price) * (1 - info.fee_bps / 10000);
    const revenue = grossAgr * n(inputs.usd);
    const power = (n(inputs.watts) / 1000) * 24 * n(inputs.kwh);
    const net = revenue - power;
    replace(out, kv([
      ["Compute units per day", trim(cuPerDay)],
      ["Revenue per day", `${trim(grossAgr)} AGR ($${revenue.toFixed(2)}) after the ${info.fee_bps / 100} % fee`],
      ["Electricity per day", `$${power.toFixed(2)}`],
      ["Net per day", h("strong", { id: "calc-net", class: net >= 0 ? "ok" : "bad" }, `$${net.toFixed(2)}`)],
    ]));
  };
  const form = h("form", { class: "form", "aria-label": "Profitability calculator", oninput: compute, onsubmit: (e) => e.preventDefault() },
    h("div", null, h("label", { for: "calc-watts" }, "Power draw (W)"), inputs.watts),
    h("div", null, h("label", { for: "calc-kwh" }, "Electricity ($ per kWh)"), inputs.kwh),
    h("div", null, h("label", { for: "calc-util" }, "Utilization (%)"), inputs.util),
    h("div", null, h("label", { for: "calc-cores" }, "Cores offered"), inputs.cores),
    h("div", null, h("label", { for: "calc-price" }, "Price (AGR per CU; default: the 1 h index)"), inputs.price),
    h("div", null, h("label", { for: "calc-usd" }, "$ per AGR"), inputs.usd));
  compute();
  return h("div", null, form, out, h("p", { class: "muted" }, "1 CU ≈ one core-second, so a fully used core sells 86,400 CU a day."));
}

export async function provider(main, { args }) {
  const id = args[0];
  const [p, served, stats, info, reference] = await Promise.all([
    get(`/v1/providers/${id}`),
    get(`/v1/dashboard/orders?provider=${encodeURIComponent(id)}&limit=200`),
    live.last ? Promise.resolve(live.last) : get("/v1/dashboard/stats"),
    get("/v1/info"),
    get("/v1/dashboard/reference"),
  ]);
  const outcomes = served.orders.filter((o) => o.state === "settled" || o.state === "refunded").reverse();
  let ok = 0;
  const history = outcomes.map((o, i) => { ok += o.state === "settled" ? 1 : 0; return [o.created_ms + (o.latency_ms || 0), ok / (i + 1)]; });
  const scores = [[Date.now(), p.reputation]];
  const chart = h("div");
  const drawChart = () => replace(chart, lineChart("Reputation: share of its jobs settled (cumulative) and the market's score", [
    { name: "settled share", points: history }, { name: "score", points: scores },
  ], (v) => v.toFixed(2)));
  drawChart();
  replace(main,
    h("h1", null, "Provider ", h("span", { class: "mono" }, id)),
    kv([
      ["Peer", p.peer || "not connected"],
      ["Hardware", hardware(p.asks)],
      ["Attributes", h("span", { id: "provider-attributes" }, attributes(p.asks))],
      ["Asks", prices(p.asks)],
      ["Stake", agr(p.stake)],
      ["Reputation", `${trim(p.reputation)} (confidence ${trim(p.confidence)})`],
      p.consecutive_verified !== undefined ? ["Verified in a row", String(p.consecutive_verified)] : null,
      p.slashed !== undefined ? ["Slashed", String(p.slashed)] : null,
      ["Jobs served", `${p.completed} settled, ${p.failed} failed, ${p.running} running`],
      ["Earned", agr(p.earned)],
      ["Last seen", when(p.last_seen_ms)],
    ]),
    h("h2", null, "Reputation history"), chart,
    h("h2", null, "Profitability calculator"), calculator(p, stats.index, info, reference),
    h("h2", null, "Jobs served"),
    table(`Latest ${served.orders.length} of ${served.total}`, [
      { label: "Order" }, { label: "Label" }, { label: "State" }, { label: "Price", num: true }, { label: "Compute", num: true }, { label: "Paid (gross, fee included)", num: true }, { label: "Created" },
    ], served.orders.slice(0, 50).map((o) => [orderLink(o.order_id), o.label, badge(o.state), price(o.price), cu(o.fuel_used), agr(o.cost), when(o.created_ms)]), "No jobs yet."));
  ready(main);
  const timer = setInterval(async () => {
    try {
      const next = await get(`/v1/providers/${id}`);
      scores.push([Date.now(), next.reputation]);
      drawChart();
    } catch { /* the page shows the last figures */ }
  }, 5000);
  return () => clearInterval(timer);
}
