// job.js: one order's page — its state and bill, requirements, offers (price, effective
// price, reputation) and winner, verification outcome, timeline of events, the signed
// receipt, stdout/stderr, outputs to download, the cost next to a reference cloud, and
// the market's "why no match" explanation when it did not match, and for an auction
// order its live bid count, the Dutch clock's current price, and after the close every
// signed bid. Follows the order's event stream until it is final (and polls the auction
// while it is open: bids are not order events).

import { get } from "./api.js";
import { h, replace, table, kv, agr, price, cu, ms, when, badge, providerLink, accountLink, ready, trim, short } from "./dom.js";

function requirements(d) {
  const r = d.requirements;
  const gib = (b) => `${trim(b / 2 ** 30)} GiB`;
  return kv([
    ["CPU", `${trim(d.demand.cpu_millis / 1000)} cores`],
    ["Memory", gib(d.demand.memory_bytes)],
    d.demand.gpu ? ["GPU", JSON.stringify(d.demand.gpu)] : null,
    ["Features", [...(r.features || [])].join(", ") || "—"],
    ["Attributes", (r.attributes || []).map((a) => JSON.stringify(a)).join("; ") || "—"],
    ["Minimum reputation", r.min_reputation_ppm ? trim(r.min_reputation_ppm / 1e6) : "—"],
    ["Minimum stake", r.min_stake ? agr(r.min_stake) : "—"],
    ["Replicas", String(d.replicas)],
    ["Fuel budget", cu(d.fuel_budget)],
    ["Deadline", when(d.deadline_ms)],
    ["Module", h("span", { class: "mono" }, d.job.module)],
    ["Arguments", d.job.args.length ? h("code", null, d.job.args.join(" ")) : "—"],
    ["Inputs", d.job.inputs.length ? d.job.inputs.map((i) => h("div", null, h("a", { href: `/v1/blobs/${i.hash}`, download: i.name }, i.name), ` (${i.size} bytes)`)) : "—"],
  ]);
}

function verification(v) {
  if (!v) return h("p", { class: "muted" }, "This node reports no verification details.");
  const runs = table("Runs that delivered", [
    { label: "Provider" }, { label: "Digest" }, { label: "Fuel", num: true }, { label: "Price", num: true }, { label: "Agreed" }, { label: "Paid", num: true },
  ], (v.runs || []).map((r) => [providerLink(r.provider), h("span", { class: "mono", title: r.digest }, short(r.digest)), cu(r.fuel), price(r.price), r.agreed === null || r.agreed === undefined ? "—" : r.agreed ? "yes" : "no", agr(r.paid)]), "No run delivered yet.");
  const slashes = (v.slashes || []).length ? table("Slashes", [{ label: "Provider" }, { label: "Amount", num: true }, { label: "Evidence" }, { label: "Reason" }],
    v.slashes.map((x) => [providerLink(x.provider), agr(x.amount), h("span", { class: "mono" }, x.evidence), x.reason])) : null;
  return h("div", null, kv([
    ["Policy", v.policy],
    ["Outcome", h("span", { class: `badge ${v.status === "verified" ? "ok" : v.status === "failed" ? "bad" : ""}`, id: "verification-status" }, v.status)],
    v.audited !== null && v.audited !== undefined ? ["Spot-check drawn", v.audited ? "yes" : "no"] : null,
    v.challenge_until_ms ? ["Challenge window until", when(v.challenge_until_ms)] : null,
    ["Fuel executed to check", cu(v.fuel_executed)],
  ]), runs, slashes);
}

function costComparison(view, detail, reference) {
  if (view.state !== "settled" || !view.result) return h("p", { class: "muted" }, "Shown once the order is settled.");
  const usd = (base) => `$${(Number(base) / 1e9 * reference.usd_per_agr).toFixed(6)}`;
  const cloud = detail.cloud_cost ?? 0;
  const ratio = cloud ? (view.cost / cloud) : null;
  return h("div", null, kv([
    ["Compute units", cu(view.result.fuel_used)],
    ["Paid on Agora", h("span", { id: "cost-agora" }, `${agr(view.cost)} (${usd(view.cost)})`)],
    ["Same CUs at the reference cloud", h("span", { id: "cost-cloud" }, `${agr(cloud)} (${usd(cloud)})`)],
    ["Agora ÷ cloud", ratio === null ? "—" : `${ratio.toFixed(2)}×`],
  ]), h("p", { class: "muted" }, `Reference: $${reference.usd_per_core_hour} per vCPU-hour (${reference.source}); 1 CU ≈ one core-second; $${reference.usd_per_agr} per AGR.`));
}

function logs(result) {
  if (!result) return h("p", { class: "muted" }, "Logs and outputs appear once the order is settled.");
  const out = (name, text, hash, truncated) => h("section", null,
    h("h3", null, name, " ", h("a", { href: `/v1/blobs/${hash}`, download: `${name}.txt` }, "(download exact bytes)")),
    h("pre", { id: `log-${name}`, tabindex: "0", "aria-label": name }, text || "(empty)"),
    truncated ? h("p", { class: "warn" }, `${name} was cut at the job's cap.`) : null);
  return h("div", null,
    kv([["Exit code", String(result.exit_code)], ["Result digest", h("span", { class: "mono" }, result.digest)]]),
    out("stdout", result.stdout, result.stdout_hash, result.stdout_truncated),
    out("stderr", result.stderr, result.stderr_hash, result.stderr_truncated),
    table("Outputs", [{ label: "File" }, { label: "Size", num: true }, { label: "Hash" }],
      result.outputs.map((o) => [h("a", { href: `/v1/blobs/${o.hash}`, download: o.name }, o.name), `${o.size} bytes`, h("span", { class: "mono" }, o.hash)]), "No output files."));
}

function receipt(detail) {
  if (!detail.receipt) return h("p", { class: "muted" }, "No receipt yet.");
  const r = detail.receipt;
  return kv([
    ["Signature", detail.receipt_valid ? h("span", { class: "ok" }, "valid for this chain") : h("span", { class: "bad" }, "does not verify")],
    ["Provider", providerLink(r.provider)],
    ["Module", h("span", { class: "mono" }, r.module)],
    ["Result digest", h("span", { class: "mono" }, r.result_digest)],
    ["Fuel used", cu(r.fuel_used)],
    ["Wall time on the provider", ms(r.wall_ms)],
    ["Raw (hex of the signed receipt)", h("details", null, h("summary", null, "show"), h("pre", null, detail.view.result.receipt))],
  ]);
}

// The order's auction (null for an instant order): a sealed auction's bids stay hidden
// until the close, so only their count shows while it is open.
async function auctionOf(id) {
  try {
    return await get(`/v1/orders/${id}/auction`);
  } catch (e) {
    if (e.status === 409) return null;
    throw e;
  }
}

function auction(a) {
  if (!a) return null;
  return h("section", { "aria-labelledby": "auction-h" },
    h("h2", { id: "auction-h" }, "Auction"),
    kv([
      ["Terms", h("code", null, a.terms)],
      ["Status", h("span", { id: "auction-status" }, badge(a.status))],
      ["Bids", h("span", { id: "auction-bids" }, String(a.bid_count))],
      a.clock ? ["Dutch price now", h("span", { id: "auction-price" }, `${price(a.clock.price)} (step ${a.clock.step})`)] : null,
      ["Closes", when(a.closes_ms)],
      a.winner ? ["Won by", h("span", null, providerLink(a.winner), " at ", price(a.price))] : null,
      ["Outcome", a.outcome],
      a.bids_digest ? ["Bids digest", h("span", { class: "mono" }, a.bids_digest)] : null,
    ]),
    a.status === "open" && a.bids.length === 0 ? null : table("Bids, in arrival order", [{ label: "Provider" }, { label: "Price", num: true }, { label: "At" }],
      a.bids.map((b) => [providerLink(b.provider), price(b.price), when(b.at_ms)]), "No bids."));
}

function draw(main, d, reference) {
  const v = d.view;
  const why = d.no_match || v.refund_reason;
  replace(main,
    h("h1", null, "Job ", h("span", { id: "job-label" }, v.label || "(no label)"), " ", h("span", { id: "job-state" }, badge(v.state))),
    kv([
      ["Order", h("span", { class: "mono", id: "job-id" }, v.order_id)],
      ["Buyer", accountLink(v.buyer)],
      ["Winner", providerLink(v.provider)],
      ["Price cap", price(v.max_price)],
      ["Price paid", h("span", { id: "job-price" }, price(v.price))],
      ["Compute units", h("span", { id: "job-cu" }, v.result ? cu(v.result.fuel_used) : "—")],
      ["Cost (fee included)", h("span", { id: "job-cost" }, agr(v.cost))],
      ["Escrow locked", agr(v.escrow)],
      ["Refunded", agr(v.refunded)],
      ["Latency", ms(v.latency_ms)],
      ["Attempts", String(v.attempts)],
      ["Created", when(v.created_ms)],
    ]),
    auction(d.auction),
    why ? h("section", { "aria-labelledby": "why-h" }, h("h2", { id: "why-h" }, d.no_match ? "Why no match (now)" : "Why it was refunded"), h("pre", { id: "why-no-match" }, why)) : null,
    h("div", { class: "two" },
      h("section", null, h("h2", null, "Requirements"), requirements(d)),
      h("section", null, h("h2", null, "Verification"), verification(v.verification))),
    h("h2", null, "Offers and winner"),
    table("Live asks priced for this order, best effective price first", [
      { label: "Provider" }, { label: "Price", num: true }, { label: "Effective price", num: true }, { label: "Reputation", num: true }, { label: "Stake", num: true }, { label: "Within cap" }, { label: "Won" },
    ], d.offers.map((o) => [providerLink(o.provider), price(o.price), price(o.effective_price), trim(o.reputation), agr(o.stake), o.within_cap ? "yes" : "no", o.won ? "winner" : ""]), "No live asks."),
    h("h2", null, "Timeline"),
    table("Events", [{ label: "Time" }, { label: "State" }, { label: "Provider" }, { label: "Detail" }],
      v.events.map((e) => [when(e.at_ms), badge(e.state), providerLink(e.provider), e.detail]), "No events."),
    h("h2", null, "Cost compared with a cloud"), costComparison(v, d, reference),
    h("h2", null, "Receipt"), receipt(d),
    h("h2", null, "Logs and outputs"), logs(v.result));
}

export async function job(main, { args, current }) {
  const id = args[0];
  const [detail, reference, open] = await Promise.all([get(`/v1/dashboard/orders/${id}`), get("/v1/dashboard/reference"), auctionOf(id)]);
  detail.auction = open;
  draw(main, detail, reference);
  ready(main);
  if (detail.view.state === "settled" || detail.view.state === "refunded") return null;
  const events = new EventSource(`/v1/orders/${id}/events`);
  window.addEventListener("pagehide", () => events.close(), { once: true });
  let timer = null;
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (!current()) return;
      const [next, auctionNow] = await Promise.all([get(`/v1/dashboard/orders/${id}`), auctionOf(id)]);
      if (!current()) return;
      next.auction = auctionNow;
      if (!auctionNow || auctionNow.status !== "open") clearInterval(poll);
      draw(main, next, reference);
      ready(main);
      if (next.view.state === "settled" || next.view.state === "refunded") events.close();
    }, 150);
  };
  for (const state of ["escrowed", "matched", "running", "verifying", "settled", "refunded"]) events.addEventListener(state, refresh);
  // Bids and the Dutch clock's steps are not order events: poll while the auction is open.
  const poll = open && open.status === "open" ? setInterval(refresh, 1000) : null;
  // The stream ends after a final state; the browser would reconnect and replay it.
  events.addEventListener("error", () => { if (events.readyState === EventSource.CLOSED) return; refresh(); });
  return () => { events.close(); clearTimeout(timer); clearInterval(poll); };
}
