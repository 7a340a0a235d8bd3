//! `docs/http-api.md` is rendered from the node's OpenAPI document
//! ([`agora_node::http::openapi`], the object served at `/openapi.json`), so the API
//! reference cannot drift from the routes. This test renders the document and compares it
//! with the committed file; with `AGORA_BLESS=1` it rewrites the file instead.
//!
//! The renderer works on the document's JSON form and sorts everything itself (paths,
//! methods, status codes, schemas, fields), so the output does not depend on which
//! `preserve_order` features happen to be unified into a build.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{Map, Value};

/// The command that rewrites the file, named in the failure message.
const BLESS: &str = "AGORA_BLESS=1 cargo test -p agora-node --test api_docs";

/// The order methods are listed in within one path.
const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

/// The hand-written part: how to call the API and how state-changing requests are signed.
const INTRO: &str = r#"# HTTP API

<!-- Generated from the node's OpenAPI document by crates/agora-node/tests/api_docs.rs.
     Do not edit by hand: change the handlers' #[utoipa::path] attributes or the records'
     doc comments, then run `AGORA_BLESS=1 cargo test -p agora-node --test api_docs`. -->

A market node (`agora node market`, see [operator-guide.md](operator-guide.md)) serves
this API on its `--http` address (default `127.0.0.1:7070`). The same document, as
OpenAPI 3.1 JSON, is at `GET /openapi.json`; Prometheus metrics are at `GET /metrics`.
The Rust client in `crates/agora-client` (`MarketClient`, `Buyer`) wraps every endpoint.

## Conventions

- Bodies are JSON (`application/json`) except blobs, which are raw bytes
  (`application/octet-stream`). JSON request bodies are capped at 1 MiB; orders carry
  content hashes, not content.
- Hashes (blob hashes, order ids, transaction ids) are 64 lower-case hex digits of a
  blake3 hash. Account ids are the `ag…` text form of an ed25519 public key.
- Amounts and prices are integers in base units: 1 AGR = 10^9 base units; a price is
  base units per compute unit (CU), and 1 CU = 10^9 units of wasmtime fuel.
- Every answer outside 2xx has an [ApiError](#apierror) body: `error` is a stable code
  (`bad_signature`, `escrow_mismatch`, `missing_blob`, `unknown_order`, ...) and
  `message` says what was wrong and what to do. A refused request changes nothing. The
  HTTP layer's own refusals have the same shape: `no_route` (404, no such path),
  `method_not_allowed` (405, with an `Allow` header), `body_too_large` (413) and
  `bad_request` (400, a path or query parameter that does not parse).
- Connections are limited (see the operator guide): a request head must arrive within
  10 s, a connection with no request in flight is closed after 60 s of silence, and at
  most 1024 connections are served at once by default. Event streams stay open while
  their client reads them.
- Reads need no authentication, and no request is authenticated by its connection:
  every request that changes state carries its own signatures, checked as described
  below. Answers are not signed (a result's receipt is, by its provider), so put the
  node behind a TLS-terminating proxy when buyers reach it over an untrusted network.

## Signed requests

State-changing requests carry signed payloads as **hex of their canonical encoding**
(postcard, the encoding signatures and hashes are computed over), inside JSON, so the
bytes a client signed are the bytes the node checks. Each payload is an envelope
`Signed<T> { signer, chain_id, nonce, body, signature }`; the ed25519 `signature` by
`signer` covers the canonical encoding of `(domain tag, chain_id, nonce, signer, body)`.
The domain tag is fixed per payload type, so a signature for one kind of message never
verifies as another, and the chain id (from `GET /v1/info`) keeps signatures from one
network from being replayed on another.

| request | payload | domain tag | nonce |
|---|---|---|---|
| `POST /v1/orders`, field `order` | `Signed<OrderRequest>`, by the buyer | `agora/order/v1` | any value: a salt that makes the order id unique |
| `POST /v1/orders`, field `escrow_tx` | ledger `Tx` with body `OpenEscrow { order_id, amount, deadline_ms }`, by the same buyer | `agora/ledger-tx/v1` | the buyer's next ledger nonce (`next_nonce` of `GET /v1/accounts/{id}`) |
| `POST /v1/orders/{id}/cancel`, field `cancel` | `Signed<CancelOrder { order_id }>`, by the order's buyer | `agora/cancel-order/v1` | any value |
| `POST /v1/txs`, field `tx` | any ledger `Tx` (transfer, bond, unbond, withdraw, ...) | `agora/ledger-tx/v1` | the signer's next ledger nonce |

An order's id is `blake3` tagged `agora/order-id/v1` over the buyer, the chain id, the
envelope nonce and the canonical body (`agora_proto::order_id`), so the buyer can sign
the escrow that names the order before the node has seen either. For `POST /v1/orders`
the node checks, in order, before anything changes: both fields decode (`bad_request`);
both signatures verify for this chain (`bad_signature`); the order's shape: sizes, input
names, positive budget and price, escrow at least price cap × fuel budget (`bad_order`);
one replica (`unsupported`); a deadline in the future and at most the market's maximum
away, 7 days unless its operator set another (`deadline_out_of_range`, whose message
states the range); the escrow is
signed by the order's signer and opens exactly this order id with exactly the order's
escrow amount and deadline (`escrow_mismatch`); the module and every input are stored
with their declared sizes (`missing_blob`, `blob_size_mismatch`); the id is new
(`duplicate_order`). Only then is the order recorded durably and its escrow committed in
a block (`escrow_refused` if the ledger refuses it, e.g. for the balance or the nonce);
matching starts after that. A cancel must be signed by the order's buyer for this chain
and name the order of its path.
A transaction goes through the ledger's own rules (signature, nonce, who may sign which
kind, balances) and the answer waits for the block that holds it.

Blob uploads are not signed: a blob is named by its blake3 hash, which the node
recomputes while storing, so an upload can only ever store the bytes its name commits to.
"#;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/http-api.md")
}

#[test]
fn http_api_md_is_rendered_from_the_openapi_document() {
    let document =
        serde_json::to_value(agora_node::http::openapi()).expect("the OpenAPI document is JSON");
    let rendered = render(&document);
    let path = doc_path();
    if std::env::var("AGORA_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &rendered).expect("docs/http-api.md is writable");
        return;
    }
    let Ok(committed) = std::fs::read_to_string(&path) else {
        panic!("docs/http-api.md is missing; create it with `{BLESS}` and commit it");
    };
    if committed != rendered {
        let line = first_difference(&committed, &rendered);
        panic!(
            "docs/http-api.md is not what the node's OpenAPI document renders to (first \
             difference at line {line}); regenerate it with `{BLESS}` and commit it"
        );
    }
}

/// The 1-based line where two texts first differ.
fn first_difference(a: &str, b: &str) -> usize {
    let same = a.lines().zip(b.lines()).take_while(|(x, y)| x == y).count();
    same + 1
}

/// The whole Markdown file.
fn render(document: &Value) -> String {
    let mut out = String::from(INTRO);
    let operations = operations(document);
    render_index(&mut out, &operations);
    for (tag, description) in tags(document) {
        let ops: Vec<&Operation> = operations.iter().filter(|o| o.tag == tag).collect();
        if ops.is_empty() {
            continue;
        }
        let _ = write!(out, "\n## {}\n\n{}\n", title_case(&tag), description);
        for op in ops {
            render_operation(&mut out, op);
        }
    }
    render_schemas(&mut out, &document["components"]["schemas"]);
    out
}

/// One path + method.
struct Operation<'a> {
    method: &'static str,
    path: &'a str,
    tag: String,
    op: &'a Value,
}

impl Operation<'_> {
    fn heading(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }
}

/// Every operation, by path then method.
fn operations(document: &Value) -> Vec<Operation<'_>> {
    let mut out = Vec::new();
    for (path, item) in sorted(&document["paths"]) {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
            out.push(Operation {
                method,
                path,
                tag,
                op,
            });
        }
    }
    out
}

/// The declared tags in declaration order, then `other` for untagged operations.
fn tags(document: &Value) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = document["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let name = t["name"].as_str().unwrap_or_default().to_string();
            (name, text(&t["description"]))
        })
        .collect();
    tags.push(("other".into(), String::new()));
    tags
}

fn render_index(out: &mut String, operations: &[Operation]) {
    out.push_str("\n## Endpoints\n\n| method and path | what it does |\n|---|---|\n");
    for op in operations {
        let heading = op.heading();
        let _ = writeln!(
            out,
            "| [`{heading}`](#{}) | {} |",
            anchor(&heading),
            cell(&text(&op.op["summary"]))
        );
    }
}

fn render_operation(out: &mut String, op: &Operation) {
    let _ = write!(out, "\n### {}\n\n", op.heading());
    let summary = rustdoc_links(&text(&op.op["summary"]));
    let description = rustdoc_links(&text(&op.op["description"]));
    for paragraph in [summary, description] {
        if !paragraph.is_empty() {
            let _ = write!(out, "{paragraph}\n\n");
        }
    }
    render_parameters(out, &op.op["parameters"]);
    if let Some(body) = op.op.get("requestBody") {
        let _ = write!(out, "Request body: {}\n\n", content_of(&body["content"]));
    }
    out.push_str("| status | body | meaning |\n|---|---|---|\n");
    for (status, response) in sorted(&op.op["responses"]) {
        let _ = writeln!(
            out,
            "| {status} | {} | {} |",
            content_of(&response["content"]),
            cell(&text(&response["description"]))
        );
    }
}

fn render_parameters(out: &mut String, parameters: &Value) {
    let Some(parameters) = parameters.as_array().filter(|p| !p.is_empty()) else {
        return;
    };
    out.push_str("| parameter | in | type | required | meaning |\n|---|---|---|---|---|\n");
    for p in parameters {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            text(&p["name"]),
            text(&p["in"]),
            type_of(&p["schema"]),
            yes_no(p["required"].as_bool().unwrap_or(false)),
            cell(&text(&p["description"]))
        );
    }
    out.push('\n');
}

/// What a request or response body holds, per content type.
fn content_of(content: &Value) -> String {
    let parts: Vec<String> = sorted(content)
        .into_iter()
        .map(|(media, body)| match media {
            "application/json" => type_of(&body["schema"]),
            "application/octet-stream" => "raw bytes (`application/octet-stream`)".into(),
            other => format!("`{other}`"),
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn render_schemas(out: &mut String, schemas: &Value) {
    out.push_str("\n## Schemas\n");
    for (name, schema) in sorted(schemas) {
        let _ = write!(out, "\n### {name}\n\n");
        let description = description_of(schema);
        if !description.is_empty() {
            let _ = write!(out, "{description}\n\n");
        }
        render_schema_body(out, schema);
    }
}

fn render_schema_body(out: &mut String, schema: &Value) {
    if let Some(properties) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str("| field | type | required | meaning |\n|---|---|---|---|\n");
        for (field, property) in sorted_map(properties) {
            let _ = writeln!(
                out,
                "| `{field}` | {} | {} | {} |",
                type_of(property),
                yes_no(required.contains(&field)),
                cell(&description_of(property))
            );
        }
    } else if let Some(variants) = schema["oneOf"].as_array() {
        out.push_str("One of:\n\n");
        for variant in variants {
            let _ = writeln!(out, "- {}", variant_line(variant));
        }
    } else {
        let _ = writeln!(out, "Type: {}.", type_of(schema));
    }
}

/// One variant of a `oneOf` schema: its values or type, and what it means.
fn variant_line(variant: &Value) -> String {
    let description = description_of(variant);
    let kind = type_of(variant);
    if description.is_empty() {
        kind
    } else {
        format!("{kind}: {description}")
    }
}

/// A schema as a short type expression, linking named schemas.
fn type_of(schema: &Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", anchor(name));
    }
    for (key, joiner) in [("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")] {
        if let Some(list) = schema[key].as_array() {
            return list.iter().map(type_of).collect::<Vec<_>>().join(joiner);
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
        return format!("one of {}", values.join(", "));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return "any".into();
    }
    let names: Vec<String> = types.iter().map(|t| simple_type(t, schema)).collect();
    names.join(" or ")
}

/// One JSON Schema type name with its detail: item type, value type, or format and
/// lower bound (utoipa writes Rust's unsigned integers as `int64` with `minimum: 0`).
fn simple_type(kind: &str, schema: &Value) -> String {
    match kind {
        "array" => format!("array of {}", type_of(&schema["items"])),
        "object" => match schema.get("additionalProperties") {
            Some(values) if values.is_object() => format!("map of {}", type_of(values)),
            _ => "object".into(),
        },
        "null" => "null".into(),
        other => {
            let mut detail: Vec<String> = schema["format"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect();
            if let Some(minimum) = schema["minimum"].as_i64() {
                detail.push(format!("≥ {minimum}"));
            }
            if detail.is_empty() {
                other.to_string()
            } else {
                format!("{other} ({})", detail.join(", "))
            }
        }
    }
}

/// A schema's description; for `Option<Named>` utoipa puts it on the named member of
/// the `oneOf`, so look there too.
fn description_of(schema: &Value) -> String {
    let own = text(&schema["description"]);
    if !own.is_empty() {
        return rustdoc_links(&own);
    }
    let members = ["oneOf", "anyOf", "allOf"]
        .into_iter()
        .filter_map(|key| schema[key].as_array())
        .flatten();
    members
        .map(|m| text(&m["description"]))
        .find(|d| !d.is_empty())
        .map(|d| rustdoc_links(&d))
        .unwrap_or_default()
}

/// Doc comments come from Rust, where ``[`Name`]`` is a link for rustdoc; in Markdown
/// it would show the brackets, so keep only the code span.
fn rustdoc_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        let Some(len) = rest[start..].find("`]") else {
            break;
        };
        let end = start + len;
        out.push_str(&rest[..start]);
        out.push_str(&rest[start + 1..end + 1]);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// An object's entries sorted by key (empty for anything else).
fn sorted(value: &Value) -> Vec<(&str, &Value)> {
    value.as_object().map(sorted_map).unwrap_or_default()
}

fn sorted_map(map: &Map<String, Value>) -> Vec<(&str, &Value)> {
    let mut entries: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
    entries.sort_by_key(|(k, _)| *k);
    entries
}

/// A string value, trimmed; empty for anything else.
fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().trim().to_string()
}

/// Text fit for one table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn yes_no(yes: bool) -> &'static str {
    if yes { "yes" } else { "no" }
}

fn title_case(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The anchor GitHub gives a heading: lower case, spaces to dashes, other punctuation
/// dropped.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn anchors_and_types_render_as_github_and_readers_expect() {
    assert_eq!(anchor("GET /v1/orders/{id}"), "get-v1ordersid");
    assert_eq!(anchor("OrderView"), "orderview");
    let nullable = serde_json::json!({ "type": ["string", "null"] });
    assert_eq!(type_of(&nullable), "string or null");
    let list = serde_json::json!({ "type": "array", "items": { "$ref": "#/components/schemas/OrderView" } });
    assert_eq!(type_of(&list), "array of [OrderView](#orderview)");
    assert_eq!(cell("a |\n b"), "a \\| b");
    let count = serde_json::json!({ "type": ["integer", "null"], "format": "int64", "minimum": 0 });
    assert_eq!(type_of(&count), "integer (int64, ≥ 0) or null");
    assert_eq!(
        rustdoc_links("listed in [`OrderView::events`] and [`Submitted`]."),
        "listed in `OrderView::events` and `Submitted`."
    );
}
