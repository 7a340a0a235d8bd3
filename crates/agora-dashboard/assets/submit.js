// submit.js: run a job from the browser. Upload a WASM module and inputs, set the price
// cap, budget, replicas and verification policy, see the price index and an estimate,
// then sign in this browser (WebCrypto Ed25519, key kept in localStorage) and follow the
// job to its result. The node prepares the exact bytes to sign and checks both
// signatures; the same job as an `agora job run` command is shown alongside.

import { get, post, upload, live } from "./api.js";
import { h, replace, kv, agr, price, table, notify, ready, accountLink } from "./dom.js";
import * as keys from "./keys.js";

const POLICIES = [
  ["", "node default (adaptive)"], ["none", "none: accept the signed receipt"], ["adaptive", "adaptive"],
  ["replicate:2:2", "replicate on 2, both agree"], ["replicate:3:2", "replicate on 3, quorum 2"], ["spot:0.2", "spot-check 20 %"],
];

function field(id, label, input, help) {
  input.id = id;
  return h("div", null, h("label", { for: id }, label), input, help ? h("small", { class: "muted", id: `${id}-help` }, help) : null);
}

async function readFile(file) {
  return new Uint8Array(await file.arrayBuffer());
}

export async function submit(main) {
  const status = h("p", { role: "status", "aria-live": "polite", id: "submit-status" });
  const keyBox = h("div", { id: "key-box" });
  let key = null;

  async function drawKey() {
    try { key = keys.supported() ? await keys.load() : null; } catch { key = null; }
    if (key) {
      get(`/v1/accounts/${keys.accountOf(key.publicKey)}`).then((a) => {
        const el = document.getElementById("key-balance");
        if (el) el.textContent = ` (balance ${agr(a.balance)}${a.balance ? "" : ": fund it before submitting"})`;
      }).catch(() => {});
    }
    const seed = h("input", { id: "seed", type: "password", autocomplete: "off", placeholder: "64 hex digits or wallet JSON" });
    replace(keyBox,
      key ? h("p", null, "Signing as account ", accountLink(keys.accountOf(key.publicKey)), h("span", { id: "key-balance" }, ""),
        " — public key ", h("span", { class: "mono", id: "key-public" }, key.publicKey), " (the key is kept in this browser only).")
        : h("p", { class: "warn" }, "No key yet: create one (then fund its account) or import an agora wallet's seed."),
      h("div", { class: "toolbar" },
        h("button", { type: "button", id: "key-create", class: "secondary", onclick: async () => { key = await keys.create(); drawKey(); } }, "Create a key"),
        h("label", { for: "seed" }, "Import seed", seed),
        h("button", { type: "button", id: "key-import", class: "secondary", onclick: async () => {
          try { key = await keys.importSeed(seed.value); seed.value = ""; drawKey(); } catch (e) { notify(e.message); }
        } }, "Import"),
        key ? h("button", { type: "button", id: "key-forget", class: "secondary", onclick: () => { keys.forget(); key = null; drawKey(); } }, "Forget key") : null));
  }

  const module = h("input", { type: "file", accept: ".wasm,application/wasm", required: true, "aria-describedby": "module-help" });
  const inputs = h("input", { type: "file", multiple: true, "aria-describedby": "inputs-help" });
  const args = h("textarea", { rows: 3, "aria-describedby": "args-help" });
  const label = h("input", { maxlength: 200 });
  const maxPrice = h("input", { type: "number", min: "0.000000001", step: "any", value: "0.1", required: true, "aria-describedby": "max-price-help" });
  const maxCu = h("input", { type: "number", min: 1, step: 1, value: 10, required: true });
  const memory = h("input", { type: "number", min: 1, step: 1, value: 128 });
  const deadline = h("input", { type: "number", min: 5, step: 1, value: 120 });
  const replicas = h("input", { type: "number", min: 1, max: 16, step: 1, value: 1 });
  const verify = h("select", null, POLICIES.map(([v, t]) => h("option", { value: v }, t)));
  const region = h("input", { placeholder: "any" });
  const estimate = h("section", { id: "estimate", "aria-live": "polite" });
  let prepared = null;

  async function prepare() {
    if (!key) throw new Error("create or import a key first");
    const file = module.files[0];
    if (!file) throw new Error("choose a .wasm module");
    status.textContent = "Uploading…";
    const stored = await upload(await readFile(file));
    const inputRefs = [];
    for (const f of inputs.files) {
      const blob = await upload(await readFile(f));
      inputRefs.push({ name: f.name, hash: blob.hash, size: blob.size });
    }
    const body = {
      public_key: key.publicKey,
      module: stored.hash,
      inputs: inputRefs,
      args: args.value.split("\n").map((a) => a.trim()).filter((a) => a.length),
      max_price: Math.round(Number(maxPrice.value) * 1e9),
      max_cu: Number(maxCu.value),
      memory_bytes: Number(memory.value) * 2 ** 20,
      deadline_in_ms: Number(deadline.value) * 1000,
      replicas: Number(replicas.value),
      verify: verify.value || null,
      region: region.value.trim() || null,
      label: label.value,
      salt: keys.randomSalt(),
    };
    const q = new URLSearchParams({ module_name: file.name, market: location.origin });
    const answer = await post(`/v1/dashboard/orders/prepare?${q}`, body);
    prepared = { body, answer };
    const index = (live.last && live.last.index) || (await get("/v1/dashboard/stats")).index;
    const cpu = index.find((i) => i.class === "cpu") || index[0];
    const perRun = answer.quote_price ? answer.quote_price * body.max_cu : null;
    // The risk-adjusted quote for the same unsigned order; a failure leaves the rest.
    const risk = await post("/v1/quote", { body: answer.body }).catch(() => null);
    replace(estimate,
      h("h2", null, "Estimate before paying"),
      kv([
        ["Order id", h("span", { class: "mono", id: "prepared-id" }, answer.order_id)],
        ["Account", accountLink(answer.account)],
        ["Balance", h("span", { id: "prepared-balance" }, agr(answer.balance))],
        ["Spot index (cpu)", cpu ? `best ask ${price(cpu.best_ask)}, ${cpu.depth_asks} asks with room` : "—"],
        ["Best offer now", answer.quote_price ? h("span", { id: "prepared-quote" }, `${price(answer.quote_price)} from `, accountLink(answer.quote_provider)) : h("span", { class: "bad", id: "prepared-quote" }, "no provider matches now")],
        ["Most it can cost", h("span", { id: "prepared-max" }, perRun === null ? "—" : `${agr(perRun)} per run at that price if the job burns its whole budget (plus the market fee)`)],
        ["Escrow locked now", h("span", { id: "prepared-escrow" }, agr(answer.escrow))],
        answer.no_match ? ["Why no match", h("pre", null, answer.no_match)] : null,
      ]),
      risk ? riskQuote(risk) : null,
      h("h3", null, "The same job from a terminal"),
      h("pre", { id: "prepared-command", tabindex: "0", "aria-label": "agora job run command" }, answer.command),
      h("button", { type: "button", id: "sign-submit", onclick: () => signAndSubmit().catch((e) => { status.textContent = ""; notify(e.message); }) }, "Sign in this browser and submit"));
    status.textContent = "Review the estimate, then sign.";
  }

  // The quote's expectations: verification overhead, odds of settling, the total with
  // retries and the reference cloud's cost.
  function riskQuote(view) {
    const q = view.quote;
    const pct = (ppm) => `${(ppm / 1e4).toFixed(1)}%`;
    return h("section", { id: "risk-quote" },
      h("h3", null, "Risk-adjusted quote"),
      kv([
        ["Qualifying providers", h("span", { id: "quote-candidates" }, String(view.candidates.length))],
        ["Verification", h("span", { id: "quote-overhead" }, `${(q.verification_runs_ppm / 1e6).toFixed(2)}× runs (${view.verification_note})`)],
        ["Chance it settles", h("span", { id: "quote-success" }, `${pct(q.success_ppm)}, ${(q.expected_attempts_ppm / 1e6).toFixed(2)} attempts expected`)],
        ["Expected total", h("span", { id: "quote-total" }, q.expected_total_if_settled === null ? "not expected to settle" : `${agr(q.expected_total_if_settled)} if it settles, retries included`)],
        ["Reference cloud", h("span", { id: "quote-cloud" }, q.reference_cost === null ? "—" : `${agr(q.reference_cost)} for one run at ${price(view.reference_price)}`)],
      ]));
  }

  async function signAndSubmit() {
    if (!prepared || !key) throw new Error("prepare the order first");
    const { body, answer } = prepared;
    status.textContent = "Signing…";
    const submitted = await post("/v1/dashboard/orders/signed", {
      public_key: key.publicKey,
      salt: body.salt,
      body: answer.body,
      escrow_nonce: answer.escrow_nonce,
      order_signature: await keys.sign(key.key, answer.order_message),
      escrow_signature: await keys.sign(key.key, answer.escrow_message),
    });
    status.textContent = `Submitted ${submitted.order_id}: ${submitted.state}.`;
    location.hash = `#/job/${submitted.order_id}`;
  }

  const form = h("form", { id: "submit-form", "aria-label": "Submit a job", onsubmit: (e) => {
    e.preventDefault();
    prepare().catch((err) => { status.textContent = ""; notify(err.message); });
  } },
  h("div", { class: "form" },
    field("module", "WASM module", module, "A WASI command module (.wasm), e.g. examples/jobs/montecarlo.wasm."),
    field("inputs", "Input files", inputs, "Visible to the job as /input/NAME."),
    h("div", { class: "wide" }, field("args", "Arguments, one per line", args, "Passed after the program name.")),
    field("label", "Label", label),
    field("max-price", "Price cap (AGR per CU)", maxPrice, "The most paid per compute unit."),
    field("max-cu", "Budget (compute units)", maxCu),
    field("memory", "Memory limit (MiB)", memory),
    field("deadline", "Deadline (seconds)", deadline),
    field("replicas", "Replicas", replicas),
    field("verify", "Verification policy", verify),
    field("region", "Region", region)),
  h("p", null, h("button", { type: "submit", id: "prepare" }, "Estimate")));

  replace(main, h("h1", null, "Submit a job"), h("h2", null, "Key"), keyBox, h("h2", null, "Job"), form, status, estimate,
    table("Sample jobs", [{ label: "Module" }, { label: "Arguments" }], [["examples/jobs/montecarlo.wasm", "200000 7"], ["examples/jobs/pathtrace.wasm", "64 48 0 48 8"]]));
  await drawKey();
  ready(main);
  return null;
}
