// app.js: the dashboard's entry point. A hash router (#/jobs, #/job/ID, ...) renders one
// page at a time into <main>, keeps the navigation's aria-current right, moves focus to
// the new page for keyboard and screen-reader users, and starts the live event stream.

import { live } from "./api.js";
import { h, notify, replace } from "./dom.js";
import { overview } from "./overview.js";
import { jobs } from "./jobs.js";
import { job } from "./job.js";
import { submit } from "./submit.js";
import { providers, provider } from "./providers.js";
import { ledger } from "./ledger.js";

const routes = [
  [/^$/, "overview", overview],
  [/^jobs$/, "jobs", jobs],
  [/^job\/([0-9a-f]{64})$/, "jobs", job],
  [/^submit$/, "submit", submit],
  [/^providers$/, "providers", providers],
  [/^provider\/(ag[1-9A-HJ-NP-Za-km-z]+)$/, "providers", provider],
  [/^ledger(?:\/(.*))?$/, "ledger", ledger],
];

let cleanup = null;
let generation = 0;

async function render() {
  const path = decodeURIComponent(location.hash.replace(/^#\/?/, "")).split("?")[0];
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const main = document.getElementById("main");
  if (cleanup) { try { cleanup(); } catch { /* a page's teardown never blocks the next */ } }
  cleanup = null;
  const mine = ++generation;
  const found = routes.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (found && a.dataset.nav === found[1]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  delete main.dataset.ready;
  if (!found) {
    replace(main, h("h1", null, "Not found"), h("p", null, "No page here. ", h("a", { href: "#/" }, "Back to the overview")));
    main.dataset.ready = "1";
    return;
  }
  const [re, name, page] = found;
  const args = path.match(re).slice(1);
  document.body.dataset.page = name;
  try {
    const result = await page(main, { args, params, current: () => mine === generation });
    if (mine === generation) cleanup = result || null;
    else if (typeof result === "function") result();
  } catch (e) {
    if (mine !== generation) return;
    replace(main, h("h1", null, "Could not load this page"), h("p", { class: "bad" }, String(e.message || e)));
    main.dataset.ready = "1";
  }
  if (mine === generation) {
    const heading = main.querySelector("h1");
    document.title = heading ? `${heading.textContent} · Agora` : "Agora";
    if (render.moved) main.focus({ preventScroll: false });
    render.moved = true;
  }
}

window.addEventListener("hashchange", render);
window.addEventListener("unhandledrejection", (e) => notify(e.reason && e.reason.message ? e.reason.message : e.reason));
live.start((state) => {
  const el = document.getElementById("live");
  if (el) el.textContent = state;
});
render();
