//! Private orders at the market: who may read a sealed blob, and the key grants that
//! carry an order's wrapped data keys between its parties (docs/privacy.md).
//!
//! The market stores and relays sealed blobs and grants without being able to open
//! either. A blob is private when its bytes start with the sealed-blob header
//! ([`agora_seal::is_sealed`]), which needs no table that a restart could lose; reading
//! one takes an [`agora_seal::AUTH_HEADER`] signed by the blob's owner (the buyer named in
//! the header) or by a party to an order that names the blob. Grants are kept in memory
//! with the order: after a market restart a buyer's client that is still following the
//! order posts its grant again at the next assignment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agora_core::{AccountId, Hash};
use agora_seal::{AUTH_HEADER, BlobAccess, HEADER_LEN, MAX_GRANT_KEYS, SignedKeyGrant};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::error::ApiFailure;
use crate::http::{ApiJson, parse_hash};
use crate::node::{OrderEntry, Shared};

/// Most grants one order keeps (one per assignment from the buyer, one per delivery).
const MAX_GRANTS_PER_ORDER: usize = 64;

/// Key grants per order, as posted.
#[derive(Default)]
pub struct Grants(Mutex<HashMap<Hash, Vec<SignedKeyGrant>>>);

impl Grants {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Hash, Vec<SignedKeyGrant>>) -> T) -> T {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map)
    }

    /// Forgets the grants of an order that is final (called when it is settled or
    /// refunded, or simply never: they are small and die with the process).
    pub fn forget(&self, order: &Hash) {
        self.with(|map| map.remove(order));
    }
}

/// `POST /v1/orders/{id}/keys`: a party's signed key grant.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitGrant {
    /// Hex of the canonical `Signed<KeyGrant>` (agora-seal).
    pub grant: String,
}

/// The accounts that are party to an order: its buyer and every provider it was assigned
/// to (replicas and auditors included).
pub fn parties(entry: &OrderEntry) -> Vec<AccountId> {
    let rec = &entry.rec;
    let mut parties = vec![rec.order.signer];
    parties.extend(rec.provider);
    parties.extend(rec.tried.iter().copied());
    parties.extend(
        rec.verification
            .runs
            .iter()
            .map(|run| run.receipt.body.provider),
    );
    parties.sort();
    parties.dedup();
    parties
}

/// Whether `blob` is one of the order's blobs: an input, or an output, stdout or stderr
/// of a delivered run.
fn names_blob(entry: &OrderEntry, blob: &Hash) -> bool {
    let rec = &entry.rec;
    let results = rec
        .result
        .iter()
        .chain(rec.verification.runs.iter().map(|run| &run.result));
    rec.order.body.job.inputs.iter().any(|i| &i.hash == blob)
        || results.into_iter().any(|r| {
            &r.stdout_hash == blob
                || &r.stderr_hash == blob
                || r.outputs.iter().any(|o| &o.hash == blob)
        })
}

/// Who signed the request's access header for `method path`; refusals are 403s that say
/// what to send.
fn signer_of(
    shared: &Shared,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    what: &str,
) -> Result<(AccountId, Option<Hash>), ApiFailure> {
    let value = headers
        .get(AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiFailure::Forbidden(format!(
                "{what} is private: send an {AUTH_HEADER} header signed by a party to the order (the buyer, or a provider assigned to it)"
            ))
        })?;
    BlobAccess::check(value, &shared.identity.chain_id, method, path, now_ms())
        .map_err(|e| ApiFailure::Forbidden(e.to_string()))
}

/// Decides a `GET /v1/blobs/{hash}`: a plaintext blob is public; a sealed one needs an
/// access header from its owner, or from a party to an order of that owner that names it.
pub fn check_blob_read(
    shared: &Shared,
    hash: &Hash,
    headers: &HeaderMap,
) -> Result<(), ApiFailure> {
    let Ok(head) = shared.blobs.read_range(hash, 0, HEADER_LEN as u64) else {
        // Unknown or unreadable: the handler answers that.
        return Ok(());
    };
    let Some(sealed) = agora_seal::is_sealed(&head) else {
        return Ok(());
    };
    let path = format!("/v1/blobs/{hash}");
    let what = format!("blob {hash}");
    let (signer, order) = signer_of(shared, headers, "GET", &path, &what)?;
    if signer == sealed.owner {
        return Ok(());
    }
    let stranger = || {
        ApiFailure::Forbidden(format!(
            "blob {hash} is private and {signer} is not its owner nor a party to an order that names it; only the buyer and the providers assigned to the order may read it"
        ))
    };
    let order = order.ok_or_else(stranger)?;
    let book = shared.book();
    let entry = book.orders.get(&order).ok_or_else(stranger)?;
    // The order must be the owner's own: anyone can sign an order that names someone
    // else's blob, which must not make them a party to that blob.
    let owners_order = entry.rec.order.signer == sealed.owner;
    if owners_order && parties(entry).contains(&signer) && names_blob(entry, hash) {
        Ok(())
    } else {
        Err(stranger())
    }
}

/// Posts a key grant: the buyer's (data keys of the order's sealed inputs, wrapped to
/// the order's providers) or a provider's (data keys of its sealed outputs, wrapped to
/// the buyer). The market checks the signature and who may grant what; it cannot open
/// the wraps.
#[utoipa::path(post, path = "/v1/orders/{id}/keys", tag = "orders",
    params(("id" = String, Path, description = "The order id, hex")),
    request_body = SubmitGrant,
    responses(
        (status = 201, description = "Kept with the order"),
        (status = 400, description = "bad_signature or bad_request (a blob that is not a sealed input of the order, an output key wrapped to someone other than the buyer, too many keys)", body = agora_proto::ApiError),
        (status = 403, description = "forbidden: the signer is not a party to the order", body = agora_proto::ApiError),
        (status = 404, description = "unknown_order", body = agora_proto::ApiError),
        (status = 409, description = "conflict: the order holds its most grants", body = agora_proto::ApiError)))]
pub(crate) async fn post_keys(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<SubmitGrant>,
) -> Result<axum::http::StatusCode, ApiFailure> {
    let id = parse_hash(&id)?;
    let grant: SignedKeyGrant = agora_proto::hexed::decode(&request.grant, "key grant")
        .map_err(|e| ApiFailure::BadRequest(format!("field `grant`: {e}")))?;
    grant.verify(&shared.identity.chain_id).map_err(|e| {
        ApiFailure::BadSignature(format!(
            "the key grant's signature does not check out ({e})"
        ))
    })?;
    if grant.body.order_id != id {
        return Err(ApiFailure::BadRequest(format!(
            "the grant is for order {}, not {id}",
            grant.body.order_id
        )));
    }
    if grant.body.keys.is_empty() || grant.body.keys.len() > MAX_GRANT_KEYS {
        return Err(ApiFailure::BadRequest(format!(
            "a grant carries 1 to {MAX_GRANT_KEYS} keys, not {}",
            grant.body.keys.len()
        )));
    }
    {
        let book = shared.book();
        let entry = book.orders.get(&id).ok_or(ApiFailure::UnknownOrder(id))?;
        check_grantor(entry, &grant)?;
    }
    shared.grants.with(|map| {
        let held = map.entry(id).or_default();
        if held.len() >= MAX_GRANTS_PER_ORDER {
            return Err(ApiFailure::Conflict(format!(
                "order {id} already holds {MAX_GRANTS_PER_ORDER} key grants"
            )));
        }
        held.push(grant);
        Ok(())
    })?;
    Ok(axum::http::StatusCode::CREATED)
}

/// The buyer may grant keys of the order's sealed inputs, to anyone it chooses; a
/// provider of the order may grant keys of its outputs, to the buyer only.
fn check_grantor(entry: &OrderEntry, grant: &SignedKeyGrant) -> Result<(), ApiFailure> {
    let order = &entry.rec.order;
    if grant.signer == order.signer {
        for key in &grant.body.keys {
            let sealed_input = order
                .body
                .job
                .inputs
                .iter()
                .any(|i| i.sealed && i.hash == key.blob);
            if !sealed_input {
                return Err(ApiFailure::BadRequest(format!(
                    "blob {} is not a sealed input of order {}",
                    key.blob,
                    entry.rec.id()
                )));
            }
        }
        return Ok(());
    }
    if !parties(entry).contains(&grant.signer) {
        return Err(ApiFailure::Forbidden(format!(
            "{} is not a party to order {}: only its buyer and the providers assigned to it may post keys",
            grant.signer,
            entry.rec.id()
        )));
    }
    if let Some(key) = grant
        .body
        .keys
        .iter()
        .find(|k| k.wrap.recipient != order.signer)
    {
        return Err(ApiFailure::BadRequest(format!(
            "a provider's grant wraps output keys to the buyer {} only, not to {}",
            order.signer, key.wrap.recipient
        )));
    }
    Ok(())
}

/// The key grants posted for an order, to its parties only (each party opens only the
/// wraps addressed to it).
#[utoipa::path(get, path = "/v1/orders/{id}/keys", tag = "orders",
    params(("id" = String, Path, description = "The order id, hex")),
    responses(
        (status = 200, description = "Hex of each canonical Signed<KeyGrant>, in the order posted", body = Vec<String>),
        (status = 403, description = "forbidden: no x-agora-auth header from a party to the order", body = agora_proto::ApiError),
        (status = 404, description = "unknown_order", body = agora_proto::ApiError)))]
pub(crate) async fn get_keys(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<String>>, ApiFailure> {
    let id = parse_hash(&id)?;
    let path = format!("/v1/orders/{id}/keys");
    let (signer, _) = signer_of(&shared, &headers, "GET", &path, "the order's key grants")?;
    {
        let book = shared.book();
        let entry = book.orders.get(&id).ok_or(ApiFailure::UnknownOrder(id))?;
        if !parties(entry).contains(&signer) {
            return Err(ApiFailure::Forbidden(format!(
                "{signer} is not a party to order {id}: only its buyer and the providers assigned to it may read its key grants"
            )));
        }
    }
    let grants = shared.grants.with(|map| {
        map.get(&id)
            .map(|held| held.iter().map(agora_proto::hexed::encode).collect())
            .unwrap_or_default()
    });
    Ok(Json(grants))
}
