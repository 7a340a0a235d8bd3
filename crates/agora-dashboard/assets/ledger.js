// ledger.js: the ledger explorer — blocks, transactions, accounts, escrows, stakes and
// slashes with their evidence, search by any id, and a "verify chain" action that replays
// the whole chain on the node and shows the result.

import { get, query } from "./api.js";
import { h, replace, table, kv, agr, when, badge, accountLink, orderLink, ready, short } from "./dom.js";

const TABS = [["blocks", "Blocks"], ["txs", "Transactions"], ["escrows", "Escrows"], ["stakes", "Stakes"], ["slashes", "Slashes"], ["verify", "Verify chain"]];

function blockLink(height) {
  return h("a", { href: `#/ledger/block/${height}`, "aria-label": `block ${height}` }, `#${height}`);
}

function body(tx) {
  return h("details", null, h("summary", null, tx.kind), h("pre", null, JSON.stringify(tx.body, null, 2)));
}

function orderOf(tx) {
  const b = tx.body && Object.values(tx.body)[0];
  return b && typeof b === "object" && b.order_id ? orderLink(b.order_id) : "—";
}

function txRows(entries) {
  return entries.map((e) => [blockLink(e.height), h("span", { class: "mono", title: e.tx.id }, short(e.tx.id)), badge(e.tx.kind), accountLink(e.tx.signer), String(e.tx.nonce), orderOf(e.tx), body(e.tx), when(e.timestamp_ms)]);
}

const TX_COLS = [{ label: "Block" }, { label: "Tx" }, { label: "Kind" }, { label: "Signer" }, { label: "Nonce", num: true }, { label: "Order" }, { label: "Body" }, { label: "Time" }];

async function txs(params, extra = {}) {
  const page = await get(`/v1/txs${query({ before: params.get("before"), kind: params.get("kind"), ...extra, limit: 50 })}`);
  const kinds = ["", "transfer", "open-escrow", "release-escrow", "refund-escrow", "burn-escrow", "bond", "unbond", "withdraw", "slash",
    "mint-voucher", "transfer-voucher", "redeem-voucher", "expire-voucher"];
  const kind = h("select", { id: "tx-kind", onchange: () => { location.hash = `#/ledger/txs${query({ kind: kind.value })}`; } },
    kinds.map((k) => h("option", { value: k, selected: k === (params.get("kind") || "") }, k || "any kind")));
  return [
    extra.account ? null : h("div", { class: "toolbar" }, h("label", { for: "tx-kind" }, "Kind", kind)),
    table("Transactions, newest first", TX_COLS, txRows(page.txs), "No transactions."),
    page.next_before && !extra.account ? h("p", null, h("a", { href: `#/ledger/txs${query({ kind: params.get("kind"), before: page.next_before })}` }, "Older →")) : null,
  ];
}

async function blocks(params) {
  const list = await get(`/v1/blocks${query({ from: params.get("from"), limit: 20 })}`);
  list.reverse();
  const oldest = list.length ? list[list.length - 1].height : 1;
  return [
    table("Blocks, newest first", [{ label: "Height" }, { label: "Hash" }, { label: "Txs", num: true }, { label: "Producer" }, { label: "Time" }],
      list.map((b) => [blockLink(b.height), h("span", { class: "mono", title: b.hash }, short(b.hash)), String(b.txs.length), accountLink(b.producer), when(b.timestamp_ms)]), "No blocks."),
    oldest > 1 ? h("p", null, h("a", { href: `#/ledger/blocks?from=${Math.max(1, oldest - 20)}` }, "Older →")) : null,
  ];
}

async function block(height) {
  const b = await get(`/v1/blocks/${height}`);
  return [
    h("h2", null, `Block #${b.height}`),
    kv([["Hash", h("span", { class: "mono" }, b.hash)], ["Previous", h("span", { class: "mono" }, b.prev_hash)], ["Tx root", h("span", { class: "mono" }, b.tx_root)],
      ["State root", h("span", { class: "mono" }, b.state_root)], ["Producer", accountLink(b.producer)], ["Time", when(b.timestamp_ms)]]),
    table("Its transactions", TX_COLS, txRows(b.txs.map((tx) => ({ height: b.height, timestamp_ms: b.timestamp_ms, tx }))), "No transactions."),
  ];
}

// The account's compute vouchers (docs/vouchers.md): one row per series. On a market that
// settles on an EVM chain there are none, and the node says so with a 400: no table then.
async function vouchers(id) {
  let held;
  try {
    held = await get(`/v1/accounts/${encodeURIComponent(id)}/vouchers`);
  } catch {
    return null;
  }
  return h("section", { id: "account-vouchers" }, table("Compute vouchers", [{ label: "Series" }, { label: "Class" }, { label: "CU", num: true }, { label: "Price / CU", num: true },
    { label: "Backing", num: true }, { label: "Redeemable from" }, { label: "Expires" }, { label: "Status" }],
  held.map((v) => [h("span", { class: "mono", title: v.series }, short(v.series)), v.class, String(v.cu), agr(v.price_per_cu), agr(v.backing),
    when(v.redeem_from_ms), when(v.expires_ms), badge(v.status)]), "No vouchers."));
}

async function account(id, params) {
  const a = await get(`/v1/accounts/${encodeURIComponent(id)}`);
  return [
    h("h2", null, "Account ", h("span", { class: "mono" }, id)),
    kv([["Balance", h("span", { id: "account-balance" }, agr(a.balance))], ["Stake", agr(a.stake)], ["Unbonding", agr(a.unbonding)], ["Next nonce", String(a.next_nonce)]]),
    h("p", null, h("a", { href: `#/jobs?buyer=${encodeURIComponent(id)}` }, "Orders it bought"), " · ", h("a", { href: `#/provider/${encodeURIComponent(id)}` }, "As a provider")),
    await vouchers(id),
    ...(await txs(params, { account: id })),
  ];
}

async function escrows(params) {
  const status = params.get("status") || "";
  const offset = Number(params.get("offset") || 0);
  const page = await get(`/v1/escrows${query({ status, offset, limit: 50 })}`);
  const sel = h("select", { id: "escrow-status", onchange: () => { location.hash = `#/ledger/escrows${query({ status: sel.value })}`; } },
    ["", "open", "released", "refunded"].map((s) => h("option", { value: s, selected: s === status }, s || "any status")));
  return [
    h("div", { class: "toolbar" }, h("label", { for: "escrow-status" }, "Status", sel)),
    table(`Escrows ${page.total ? offset + 1 : 0}–${offset + page.escrows.length} of ${page.total}`, [
      { label: "Order" }, { label: "Buyer" }, { label: "Status" }, { label: "Locked", num: true }, { label: "Remaining", num: true }, { label: "Released", num: true }, { label: "Deadline" },
    ], page.escrows.map((e) => [orderLink(e.order_id), accountLink(e.buyer), badge(e.status), agr(e.locked), agr(e.remaining), agr(e.released), when(e.deadline_ms)]), "No escrows."),
    offset + 50 < page.total ? h("p", null, h("a", { href: `#/ledger/escrows${query({ status, offset: offset + 50 })}` }, "More →")) : null,
  ];
}

async function stakes() {
  const list = await get("/v1/stakes");
  return [table("Stakes, largest first", [{ label: "Account" }, { label: "Bonded", num: true }, { label: "Unbonding", num: true }],
    list.map((s) => [accountLink(s.account), agr(s.bonded), agr(s.unbonding)]), "No stake bonded.")];
}

async function slashes(params) {
  const page = await get(`/v1/slashes${query({ before: params.get("before"), limit: 50 })}`);
  return [table("Slashes with their evidence", [{ label: "Block" }, { label: "Provider" }, { label: "Amount", num: true }, { label: "Evidence (hash; record)" }, { label: "Order" }, { label: "Reason" }, { label: "Beneficiary" }, { label: "Time" }],
    page.slashes.map((x) => {
      const e = x.entry;
      const s = e.tx.body.Slash || {};
      const evidence = x.evidence_record
        ? h("details", null, h("summary", { class: "mono", title: s.evidence }, short(s.evidence)), h("pre", null, x.evidence_record))
        : h("span", { class: "mono", title: s.evidence }, short(s.evidence));
      return [blockLink(e.height), accountLink(s.provider), agr(s.amount), evidence, x.order_id ? orderLink(x.order_id) : "—", s.reason, accountLink(s.beneficiary), when(e.timestamp_ms)];
    }), "No provider has been slashed.")];
}

async function verify() {
  const out = h("div", { id: "verify-result", "aria-live": "polite" }, h("p", { class: "muted" }, "Replays every block from genesis on the node: signatures, links, roots, rules and conservation."));
  const button = h("button", { type: "button", id: "verify-chain", onclick: async () => {
    button.disabled = true;
    replace(out, h("p", null, "Replaying…"));
    try {
      const c = await get("/v1/dashboard/verify");
      replace(out, kv([
        ["Result", h("strong", { id: "verify-verdict", class: c.verified ? "ok" : "bad" }, c.verified ? "verified" : "FAILED")],
        ["Height replayed", String(c.height)], ["Transactions", String(c.txs)], ["Conservation", c.conservation ? "holds" : "broken"],
        ["State root", h("span", { class: "mono" }, c.state_root || "—")], c.error ? ["First problem", c.error] : null,
        c.supply ? ["Supply", h("pre", null, JSON.stringify(c.supply, null, 2))] : null,
      ]));
    } catch (e) {
      replace(out, h("p", { class: "bad" }, String(e.message)));
    } finally { button.disabled = false; }
  } }, "Verify chain");
  return [h("p", null, button), out];
}

async function search(q) {
  const hit = await get(`/v1/search${query({ q })}`);
  const go = { order: `#/job/${hit.id}`, account: `#/ledger/account/${hit.id}`, block: `#/ledger/block/${hit.height}`, tx: `#/ledger/block/${hit.height}`, evidence: `#/job/${hit.id}` }[hit.kind];
  if (go) { location.replace(go); return [h("p", null, "Opening…")]; }
  if (hit.kind === "blob") return [h("p", null, "A stored blob: ", h("a", { href: `/v1/blobs/${hit.id}` }, "download it"))];
  return [h("p", { class: "muted", id: "search-none" }, "Nothing on this node has that id: ", h("code", null, q))];
}

export async function ledger(main, { args, params }) {
  const path = args[0] || "blocks";
  const [tab, arg] = path.split("/");
  const searchBox = h("input", { id: "ledger-q", type: "search", placeholder: "order, tx, account, block height", value: params.get("q") || "" });
  const searchForm = h("form", { class: "toolbar", role: "search", "aria-label": "Search the ledger", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/ledger/search${query({ q: searchBox.value.trim() })}`;
  } }, h("label", { for: "ledger-q" }, "Search by id", searchBox), h("button", { type: "submit" }, "Search"));
  const tabs = h("ul", { class: "tabs", "aria-label": "Ledger views" }, TABS.map(([k, t]) => h("li", null, h("a", { href: `#/ledger/${k}`, "aria-current": k === tab ? "page" : null }, t))));
  const views = {
    blocks: () => blocks(params), txs: () => txs(params), escrows: () => escrows(params), stakes, slashes: () => slashes(params), verify,
    block: () => block(arg), account: () => account(arg, params), search: () => search(params.get("q") || ""),
  };
  const content = await (views[tab] || views.blocks)();
  replace(main, h("h1", null, "Ledger explorer"), searchForm, tabs, content);
  ready(main);
  return null;
}
