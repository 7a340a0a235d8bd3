//! The dashboard end to end in headless Chromium against a real market node and provider
//! agents (in this process, over loopback only): every page renders on an empty network,
//! a job is submitted through the form and signed in the browser with WebCrypto, it
//! settles while the overview updates live, the job page and the ledger explorer show
//! the same numbers as the API, hostile labels, arguments and provider attributes stay
//! text, and the pages fit a phone-sized window. Screenshots of every page land in
//! `target/dashboard-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`.ci/run` installs them); fails
//! without them unless `AGORA_SKIP_BROWSER=1`.

mod support;

use agora_core::Fuel;
use fantoccini::Locator;
use serde_json::Value;
use support::{Browser, Net, agr_text, hello_module, repo_root};

/// Planted in labels, arguments and provider attributes; none may ever run.
const HOSTILE_LABEL: &str = "<img src=x onerror=\"window.__pwned=1\">";
const HOSTILE_ARG: &str = "</script><script>window.__pwned=2</script>";
const HOSTILE_ATTR: &str = "<svg onload=window.__pwned=3>";

const PAGES: &[(&str, &str)] = &[
    ("overview", "#/"),
    ("jobs", "#/jobs"),
    ("submit", "#/submit"),
    ("providers", "#/providers"),
    ("ledger-blocks", "#/ledger/blocks"),
    ("ledger-txs", "#/ledger/txs"),
    ("ledger-escrows", "#/ledger/escrows"),
    ("ledger-stakes", "#/ledger/stakes"),
    ("ledger-slashes", "#/ledger/slashes"),
    ("ledger-verify", "#/ledger/verify"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_headers_are_strict() {
    let net = Net::start().await;
    let shell = net.get_raw("/").await;
    assert_eq!(shell.status(), 200);
    let csp = shell.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert!(
        shell.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let etag = shell.headers()["etag"].to_str().unwrap().to_string();
    let body = shell.text().await.unwrap();
    assert!(body.contains("/assets/app.js"));
    let js = net.get_raw("/assets/app.js").await;
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(js.headers()["cache-control"], "no-cache");
    let again = reqwest::Client::new()
        .get(format!("{}/", net.url))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(net.get_raw("/assets/nope.js").await.status(), 404);
    // The API is unchanged by the merge.
    assert_eq!(net.get("/health").await["status"], "ok");
    let page = net.get("/v1/dashboard/orders").await;
    assert_eq!(page["total"], 0);
    net.stop().await;
}

async fn open_all(browser: &Browser, net: &Net, prefix: &str) {
    for (name, route) in PAGES {
        browser.open(&format!("{}/{route}", net.url)).await;
        browser.assert_no_injection(name).await;
        browser.screenshot(&format!("{prefix}-{name}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_end_to_end_in_chromium() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut net = Net::start().await;

    // An empty network: every page renders.
    open_all(&browser, &net, "empty").await;

    net.add_provider(0, &[("note", HOSTILE_ATTR)]).await;
    net.add_provider(1, &[]).await;
    let buyer = net.keys.users[0].clone();

    // Submit through the form, signing in the browser with the imported dev seed.
    browser.open(&format!("{}/#/submit", net.url)).await;
    let seed = browser.client.find(Locator::Id("seed")).await.unwrap();
    seed.send_keys(&hex_seed(&buyer)).await.unwrap();
    browser
        .client
        .find(Locator::Id("key-import"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let public = browser.wait_text("#key-public", |t| t.len() == 64).await;
    assert_eq!(public, hex_of(buyer.account().as_bytes()));
    let account = browser
        .js("return document.querySelector('#key-box a[aria-label^=\"account \"]').getAttribute('title')")
        .await;
    assert_eq!(
        account,
        buyer.account().to_string(),
        "the page derives the account id"
    );
    let module = repo_root().join("examples/jobs/montecarlo.wasm");
    let module = module.canonicalize().expect("the sample module");
    let file = browser.client.find(Locator::Id("module")).await.unwrap();
    file.send_keys(module.to_str().unwrap()).await.unwrap();
    browser
        .client
        .find(Locator::Id("args"))
        .await
        .unwrap()
        .send_keys("20000\n7")
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Id("label"))
        .await
        .unwrap()
        .send_keys(HOSTILE_LABEL)
        .await
        .unwrap();
    browser
        .client
        .find(Locator::Id("prepare"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let prepared_id = browser.wait_text("#prepared-id", |t| t.len() == 64).await;
    let command = browser.text("#prepared-command").await;
    assert!(command.starts_with("agora job run --market"), "{command}");
    assert!(command.contains("montecarlo.wasm -- 20000 7"), "{command}");
    let quote = browser.text("#prepared-quote").await;
    assert!(
        quote.contains("0.02 AGR/CU"),
        "the cheapest provider's price: {quote}"
    );
    // The risk-adjusted quote of the same order (POST /v1/quote), before anything is signed.
    let success = browser.text("#quote-success").await;
    assert!(success.contains("attempts expected"), "{success}");
    let candidates = browser.text("#quote-candidates").await;
    assert_ne!(candidates.trim(), "0", "providers qualify: {candidates}");
    browser.screenshot("submit-estimate").await;
    browser
        .client
        .find(Locator::Id("sign-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_js(&format!("return location.hash === '#/job/{prepared_id}'"))
        .await;
    browser.wait_text("#job-state", |t| t == "settled").await;
    browser.wait_ready().await;
    browser.assert_no_injection("job page").await;
    browser.screenshot("job-settled").await;

    // The job page against the API.
    let id = prepared_id.parse().unwrap();
    let view = net.order(&id).await;
    assert_eq!(view.state, agora_proto::OrderState::Settled);
    assert_eq!(view.label, HOSTILE_LABEL);
    assert_eq!(
        browser.text("#job-label").await,
        HOSTILE_LABEL,
        "the label is shown as text"
    );
    assert_eq!(browser.text("#job-cost").await, agr_text(view.cost.0));
    let result = view.result.clone().unwrap();
    let cu = format!("{} CU", trim(result.fuel_used.0 as f64 / 1e9));
    assert_eq!(browser.text("#job-cu").await, cu);
    assert_eq!(
        browser.text("#log-stdout").await.trim(),
        result.stdout.trim()
    );
    let cloud = browser.text("#cost-cloud").await;
    assert!(cloud.contains("AGR ($"), "{cloud}");

    // A hostile order over the API while the overview is open: its figures move live.
    browser.open(&format!("{}/#/", net.url)).await;
    let settled_before: u64 = browser.text("#stat-settled").await.parse().unwrap();
    assert_eq!(settled_before, 1);
    let hello = hello_module();
    net.upload(&hello).await;
    let nonce = net.next_nonce(&buyer).await;
    let hostile = net
        .submit(
            &buyer,
            nonce,
            &hello,
            HOSTILE_LABEL,
            &[HOSTILE_ARG],
            Fuel::compute_units(1),
            42,
        )
        .await;
    net.wait_final(&hostile.order_id).await;
    browser.wait_text("#stat-settled", |t| t == "2").await;
    let stats = net.get("/v1/dashboard/stats").await;
    let shown_cu = browser.text("#stat-cu").await;
    assert_eq!(
        shown_cu,
        format!("{} CU", trim(stats["fuel_sold"].as_f64().unwrap() / 1e9))
    );
    browser.assert_no_injection("overview").await;
    browser.screenshot("overview-live").await;

    // Hostile data on every page that shows it.
    browser
        .open(&format!("{}/#/job/{}", net.url, hostile.order_id))
        .await;
    browser.assert_no_injection("hostile job page").await;
    assert!(
        browser
            .js("return document.body.textContent")
            .await
            .as_str()
            .unwrap()
            .contains(HOSTILE_ARG)
    );
    browser.open(&format!("{}/#/jobs?q=%3Cimg", net.url)).await;
    browser.assert_no_injection("jobs filtered").await;
    browser.screenshot("jobs").await;
    browser.open(&format!("{}/#/providers", net.url)).await;
    browser.assert_no_injection("providers").await;
    assert!(
        browser
            .js("return document.body.textContent")
            .await
            .as_str()
            .unwrap()
            .contains(HOSTILE_ATTR)
    );
    let provider = net.keys.users[2].account();
    browser
        .open(&format!("{}/#/provider/{provider}", net.url))
        .await;
    browser.assert_no_injection("provider").await;
    // The calculator: no utilization, 100 W at $0.20/kWh loses $0.48 a day.
    let util = browser.client.find(Locator::Id("calc-util")).await.unwrap();
    util.clear().await.unwrap();
    util.send_keys("0").await.unwrap();
    let watts = browser
        .client
        .find(Locator::Id("calc-watts"))
        .await
        .unwrap();
    watts.clear().await.unwrap();
    watts.send_keys("100").await.unwrap();
    let kwh = browser.client.find(Locator::Id("calc-kwh")).await.unwrap();
    kwh.clear().await.unwrap();
    kwh.send_keys("0.2").await.unwrap();
    browser.wait_text("#calc-net", |t| t == "$-0.48").await;
    browser.screenshot("provider").await;

    // The ledger explorer: verify the chain, find the order, read the buyer's account.
    browser.open(&format!("{}/#/ledger/verify", net.url)).await;
    browser
        .client
        .find(Locator::Id("verify-chain"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text("#verify-verdict", |t| t == "verified")
        .await;
    let audit = net.get("/v1/ledger/verify").await;
    assert_eq!(audit["verified"], Value::Bool(true));
    browser.screenshot("ledger-verified").await;
    browser
        .open(&format!("{}/#/ledger/txs?kind=open-escrow", net.url))
        .await;
    let rows = browser
        .js("return document.querySelectorAll('tbody tr').length")
        .await;
    assert_eq!(rows, 2, "two escrows opened");
    browser
        .open(&format!("{}/#/ledger/search?q={id}", net.url))
        .await;
    browser
        .wait_js(&format!("return location.hash === '#/job/{id}'"))
        .await;
    // The buyer buys 3 CU ahead at the market's quote; its account page lists them.
    let quote = net.get("/v1/vouchers/quote?class=cpu").await;
    let quote: agora_ledger::SignedQuote =
        agora_proto::hexed::decode(quote["quote"].as_str().expect("a quote"), "quote")
            .expect("a decodable quote");
    let mint = agora_core::Signed::sign(
        &buyer,
        &quote.chain_id.clone(),
        net.next_nonce(&buyer).await,
        agora_ledger::TxBody::MintVoucher { quote, cu: 3 },
    );
    let minted = reqwest::Client::new()
        .post(format!("{}/v1/txs", net.url))
        .json(&serde_json::json!({ "tx": agora_proto::hexed::encode(&mint) }))
        .send()
        .await
        .expect("POST /v1/txs");
    assert!(
        minted.status().is_success(),
        "mint refused: {:?}",
        minted.text().await
    );
    browser
        .open(&format!("{}/#/ledger/account/{}", net.url, buyer.account()))
        .await;
    let account = net.get(&format!("/v1/accounts/{}", buyer.account())).await;
    assert_eq!(
        browser.text("#account-balance").await,
        agr_text(account["balance"].as_u64().unwrap())
    );
    let vouchers = browser.text("#account-vouchers").await;
    assert!(
        vouchers.contains("cpu") && vouchers.contains("redeemable"),
        "the account page lists the voucher: {vouchers}"
    );
    browser.screenshot("ledger-account").await;
    browser.open(&format!("{}/#/", net.url)).await;
    browser
        .wait_text("#stat-verify", |t| t.starts_with("verified to #"))
        .await;

    // Every page again with history, also in a phone-sized window, labelled and fitting.
    open_all(&browser, &net, "busy").await;
    browser.client.set_window_size(390, 844).await.unwrap();
    for (name, route) in PAGES.iter().chain(&[("job", "")]) {
        let url = if *name == "job" {
            format!("{}/#/job/{id}", net.url)
        } else {
            format!("{}/{route}", net.url)
        };
        browser.open(&url).await;
        let fits = browser
            .js("return document.documentElement.scrollWidth <= window.innerWidth + 1")
            .await;
        if fits != Value::Bool(true) {
            browser.screenshot(&format!("phone-{name}-overflow")).await;
            let wide = browser
                .js("return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll')).slice(0, 8).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))")
                .await;
            panic!("{name} overflows a 390 px window: {wide}");
        }
        let unlabelled = browser
            .js("return [...document.querySelectorAll('input,select,textarea')].filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)")
            .await;
        assert_eq!(
            unlabelled,
            Value::Array(vec![]),
            "{name}: controls without a label"
        );
        browser.screenshot(&format!("phone-{name}")).await;
    }
    // Keyboard: the skip link is the first stop and moves focus to the page.
    browser.client.set_window_size(1280, 1000).await.unwrap();
    browser.open(&format!("{}/#/jobs", net.url)).await;
    let first = browser
        .js("document.activeElement.blur(); return document.querySelector('a.skip').textContent")
        .await;
    assert_eq!(first, "Skip to content");

    browser.close().await;
    net.stop().await;
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_seed(key: &agora_core::Keypair) -> String {
    hex_of(&key.secret_bytes())
}

/// dom.js `trim()`.
fn trim(n: f64) -> String {
    if n == 0.0 {
        return "0".into();
    }
    let digits = if n.abs() >= 1.0 { 4 } else { 9 };
    let fixed = format!("{n:.digits$}");
    fixed
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}
