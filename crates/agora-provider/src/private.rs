//! A provider's side of a private order (docs/privacy.md): opening the sealed inputs with
//! the data keys the buyer wrapped to this provider, and sealing the outcome to the buyer.
//!
//! Sealed inputs are read over the market's HTTP API with a signed access header, never
//! over the blob protocol (which refuses them), and opened into a temporary directory
//! that lives as long as the run; plaintext never enters the agent's blob store, which
//! serves any peer. Outputs, stdout and stderr are sealed under fresh data keys, the
//! sealed outputs uploaded to the market, and the keys wrapped to the buyer in a signed
//! grant posted before the delivery.

use std::path::PathBuf;
use std::time::Duration;

use agora_core::{Hash, Signed};
use agora_exec::Outcome;
use agora_proto::wire::{Assignment, OutputRef, Stream};
use agora_seal::{
    BlobAccess, BlobKey, DataKey, KeyGrant, OpeningKey, RecipientKey, SealedHeader, SignedKeyGrant,
};

use crate::agent::{Shared, now_ms};
use crate::http::MarketApi;

/// How long a provider waits for the buyer's key grant after being assigned. The buyer's
/// client posts it as soon as it sees the assignment; a buyer that is gone leaves the
/// order to be refunded.
const GRANT_WAIT: Duration = Duration::from_secs(30);
/// How often the grants are polled meanwhile.
const GRANT_POLL: Duration = Duration::from_millis(100);

/// Sealed inputs opened for one run; the directory goes when the run ends.
pub(crate) struct OpenedInputs {
    _dir: tempfile::TempDir,
    /// Each opened input's name and plaintext file.
    pub files: Vec<(Hash, PathBuf)>,
}

/// The market API, or why a private order cannot be run here.
fn api(shared: &Shared) -> Result<&MarketApi, String> {
    shared.api.as_ref().ok_or_else(|| {
        "this provider has no market HTTP URL, which private orders need (their sealed blobs and keys are served over signed HTTP)".to_owned()
    })
}

fn access(shared: &Shared, path: &str, order: Hash) -> String {
    BlobAccess::header(
        &shared.key,
        &shared.market.chain,
        "GET",
        path,
        Some(order),
        now_ms(),
    )
}

/// Fetches and opens every sealed input of `assignment`. The error says which input and
/// why: no key from the buyer in time, a key that does not open, or a blob that does not
/// authenticate — the same for any provider, so the order is refunded.
pub(crate) async fn open_inputs(
    shared: &Shared,
    assignment: &Assignment,
) -> Result<OpenedInputs, String> {
    let api = api(shared)?;
    let order = &assignment.order;
    let sealed: Vec<_> = order.body.job.inputs.iter().filter(|i| i.sealed).collect();
    let dir = tempfile::Builder::new()
        .prefix("agora-private-")
        .tempdir()
        .map_err(|e| format!("cannot make a directory for the opened inputs: {e}"))?;
    let grant = await_grant(shared, api, assignment, &sealed).await?;
    let opening = OpeningKey::of(&shared.key);
    let mut files = Vec::with_capacity(sealed.len());
    for (i, input) in sealed.iter().enumerate() {
        let path = format!("/v1/blobs/{}", input.hash);
        let bytes = api
            .get_signed_bytes(&path, &access(shared, &path, assignment.order_id))
            .await
            .map_err(|e| format!("sealed input {}: {e}", input.name))?;
        if Hash::of(&bytes) != input.hash {
            return Err(format!(
                "sealed input {} does not hash to {} as the order says",
                input.name, input.hash
            ));
        }
        let header =
            SealedHeader::parse(&bytes).map_err(|e| format!("sealed input {}: {e}", input.name))?;
        let wrap = grant
            .body
            .key_for(&input.hash, &shared.key.account())
            .ok_or_else(|| format!("the buyer's key grant has no key for input {}", input.name))?;
        let key = agora_seal::unwrap_key(wrap, &opening, &header)
            .map_err(|e| format!("sealed input {}: {e}", input.name))?;
        // Opened segment by segment straight into the run's file; on a failure the whole
        // directory goes with the run, so no partial plaintext is used.
        let file = dir.path().join(format!("input-{i}"));
        let out = std::fs::File::create(&file)
            .map_err(|e| format!("cannot write opened input {}: {e}", input.name))?;
        agora_seal::open_stream(&key, &bytes[..], std::io::BufWriter::new(out))
            .map_err(|e| format!("sealed input {}: {e}", input.name))?;
        files.push((input.hash, file));
    }
    Ok(OpenedInputs { _dir: dir, files })
}

/// Waits for a grant signed by the order's buyer that holds a key for this provider for
/// every sealed input. Grants from anyone else are ignored: the market relays them but
/// could not forge the buyer's signature.
async fn await_grant(
    shared: &Shared,
    api: &MarketApi,
    assignment: &Assignment,
    sealed: &[&agora_proto::InputRef],
) -> Result<SignedKeyGrant, String> {
    let me = shared.key.account();
    let buyer = assignment.order.signer;
    let path = format!("/v1/orders/{}/keys", assignment.order_id);
    let until = std::time::Instant::now() + GRANT_WAIT;
    let mut last_error = String::from("none posted");
    loop {
        match api
            .get_signed_bytes(&path, &access(shared, &path, assignment.order_id))
            .await
            .and_then(|bytes| {
                serde_json::from_slice::<Vec<String>>(&bytes).map_err(|e| {
                    crate::error::ProviderError::Config(format!("unreadable key grants: {e}"))
                })
            }) {
            Ok(grants) => {
                let usable = grants
                    .iter()
                    .filter_map(|hex| {
                        agora_proto::hexed::decode::<SignedKeyGrant>(hex, "key grant").ok()
                    })
                    .filter(|g| {
                        g.signer == buyer
                            && g.body.order_id == assignment.order_id
                            && g.verify(&shared.market.chain).is_ok()
                    })
                    .rfind(|g| {
                        sealed
                            .iter()
                            .all(|i| g.body.key_for(&i.hash, &me).is_some())
                    });
                if let Some(grant) = usable {
                    return Ok(grant);
                }
                if !grants.is_empty() {
                    last_error = format!(
                        "{} grant(s) posted, none signed by the buyer with a key for {me} for every sealed input",
                        grants.len()
                    );
                }
            }
            Err(e) => last_error = e.to_string(),
        }
        if std::time::Instant::now() >= until {
            return Err(format!(
                "the buyer posted no key for this provider's sealed inputs within {} s ({last_error}); a private order needs the buyer's client online to grant keys after assignment",
                GRANT_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(GRANT_POLL).await;
    }
}

/// What a private delivery carries in place of the plaintext outcome.
pub(crate) struct SealedOutcome {
    pub stdout: Stream,
    pub stderr: Stream,
    pub outputs: Vec<OutputRef>,
}

/// Seals the outcome to the buyer: uploads each sealed output, and posts the grant that
/// wraps every data key (outputs, stdout, stderr) to the buyer.
pub(crate) async fn seal_outcome(
    shared: &Shared,
    assignment: &Assignment,
    outcome: &Outcome,
) -> Result<SealedOutcome, String> {
    let api = api(shared)?;
    let buyer = assignment.order.signer;
    let to_buyer = RecipientKey::of(&buyer).map_err(|e| e.to_string())?;
    let mut keys = Vec::with_capacity(outcome.outputs.len() + 2);
    let mut seal_one = |plain: &[u8]| -> Result<Vec<u8>, String> {
        let key = DataKey::generate().map_err(|e| e.to_string())?;
        let sealed = agora_seal::seal(&key, buyer, plain).map_err(|e| e.to_string())?;
        let header = SealedHeader::parse(&sealed).map_err(|e| e.to_string())?;
        let wrap = agora_seal::wrap_key(&key, &to_buyer, &header).map_err(|e| e.to_string())?;
        keys.push(BlobKey {
            blob: Hash::of(&sealed),
            wrap,
        });
        Ok(sealed)
    };
    let stdout = sealed_stream(&outcome.stdout, seal_one(&outcome.stdout.data)?);
    let stderr = sealed_stream(&outcome.stderr, seal_one(&outcome.stderr.data)?);
    let mut outputs = Vec::with_capacity(outcome.outputs.len());
    let mut uploads = Vec::with_capacity(outcome.outputs.len());
    for file in &outcome.outputs {
        let sealed = seal_one(&file.data)?;
        let hash = Hash::of(&sealed);
        outputs.push(OutputRef {
            name: file.name.clone(),
            hash,
            size: sealed.len() as u64,
        });
        uploads.push((hash, sealed));
    }
    for (hash, sealed) in uploads {
        api.put_blob(&hash, sealed)
            .await
            .map_err(|e| format!("uploading a sealed output: {e}"))?;
    }
    let grant = Signed::sign(
        &shared.key,
        &shared.market.chain,
        shared.next_nonce(),
        KeyGrant {
            order_id: assignment.order_id,
            keys,
        },
    );
    let body = serde_json::json!({ "grant": agora_proto::hexed::encode(&grant) });
    api.post_json(&format!("/v1/orders/{}/keys", assignment.order_id), &body)
        .await
        .map_err(|e| format!("posting the output keys: {e}"))?;
    Ok(SealedOutcome {
        stdout,
        stderr,
        outputs,
    })
}

fn sealed_stream(captured: &agora_exec::Captured, sealed: Vec<u8>) -> Stream {
    Stream {
        data: sealed,
        total_bytes: captured.total_bytes,
        truncated: captured.truncated,
    }
}
