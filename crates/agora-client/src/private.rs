//! The buyer's side of a private order (docs/privacy.md).
//!
//! 1. Each input is sealed under a fresh data key, with the buyer as owner, and uploaded:
//!    the market stores ciphertext, named by the ciphertext's hash.
//! 2. The order names the sealed inputs (`InputRef::sealed`); nobody has been chosen to run
//!    it yet, so no key is given out at submission.
//! 3. While the client follows the order, every provider the market assigns it to (the
//!    first run, replicas, auditors) gets a signed [`KeyGrant`] wrapping each input's key
//!    to that provider's account key.
//! 4. The provider seals stdout, stderr and the outputs to the buyer and grants their
//!    keys to the buyer; the client fetches them with a signed access header, unwraps the
//!    keys and opens them locally.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use agora_core::{AccountId, Hash, Signed};
use agora_proto::api::JobResult;
use agora_proto::{InputRef, JobSpec, OrderEvent, OrderState};
use agora_seal::{
    BlobAccess, BlobKey, DataKey, KeyGrant, OpeningKey, RecipientKey, SealedHeader, SignedKeyGrant,
};

use crate::buyer::{Buyer, JobRequest, JobSummary, hash_file, now_ms};
use crate::error::ClientError;

/// One sealed input and the key that opens it; the key never leaves the client except
/// wrapped to a provider.
pub struct SealedInput {
    /// The input's name in the order.
    pub name: String,
    /// The hash of the sealed blob.
    pub hash: Hash,
    header: SealedHeader,
    key: DataKey,
}

impl SealedInput {
    /// The input's data key (the buyer's own secret; wrap it, never send it).
    pub fn key(&self) -> &DataKey {
        &self.key
    }

    /// The sealed blob's header, which every wrap of its key is bound to.
    pub fn header(&self) -> &SealedHeader {
        &self.header
    }
}

/// A private order's opened result.
#[derive(Debug)]
pub struct OpenedResult {
    /// The job's stdout, opened.
    pub stdout: Vec<u8>,
    /// Its stderr, opened.
    pub stderr: Vec<u8>,
    /// Output files opened into the output directory.
    pub outputs: Vec<PathBuf>,
}

fn private_error(detail: impl Into<String>) -> ClientError {
    ClientError::Private(detail.into())
}

impl Buyer {
    /// Uploads `request`'s module as it is and its inputs sealed (see the module docs);
    /// returns the job and the keys of its sealed inputs.
    pub async fn upload_job_sealed(
        &self,
        request: &JobRequest,
        scratch: &Path,
    ) -> Result<(JobSpec, Vec<SealedInput>), ClientError> {
        let mut job = self
            .upload_job(&JobRequest {
                inputs: Vec::new(),
                ..request.clone()
            })
            .await?;
        let mut sealed = Vec::with_capacity(request.inputs.len());
        for (i, (name, path)) in request.inputs.iter().enumerate() {
            let key = DataKey::generate().map_err(|e| private_error(e.to_string()))?;
            let target = scratch.join(format!("sealed-input-{i}"));
            seal_file(&key, self.account(), path, &target).await?;
            let (hash, size) = hash_file(&target).await?;
            self.client().upload_blob(&target, &hash).await?;
            let head = tokio::fs::read(&target)
                .await
                .map_err(|e| ClientError::io(&target, e))?;
            let header = SealedHeader::parse(&head).map_err(|e| private_error(e.to_string()))?;
            let _ = tokio::fs::remove_file(&target).await;
            job.inputs.push(InputRef {
                name: name.clone(),
                hash,
                size,
                sealed: true,
            });
            sealed.push(SealedInput {
                name: name.clone(),
                hash,
                header,
                key,
            });
        }
        Ok((job, sealed))
    }

    /// Posts a grant wrapping every sealed input's key to `provider`.
    pub async fn grant_inputs(
        &self,
        order_id: Hash,
        provider: AccountId,
        inputs: &[SealedInput],
    ) -> Result<(), ClientError> {
        let to = RecipientKey::of(&provider).map_err(|e| private_error(e.to_string()))?;
        let keys = inputs
            .iter()
            .map(|input| {
                agora_seal::wrap_key(&input.key, &to, &input.header)
                    .map(|wrap| BlobKey {
                        blob: input.hash,
                        wrap,
                    })
                    .map_err(|e| private_error(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let grant = Signed::sign(
            self.key(),
            self.chain(),
            now_ms(),
            KeyGrant { order_id, keys },
        );
        self.client().post_grant(&order_id, &grant).await
    }

    /// Fetches and opens a private order's result: stdout, stderr and each output (into
    /// `dir`), with the keys its provider granted to this buyer.
    pub async fn open_result(
        &self,
        order_id: Hash,
        result: &JobResult,
        dir: &Path,
    ) -> Result<OpenedResult, ClientError> {
        let grants = self.key_grants(order_id).await?;
        let opening = OpeningKey::of(self.key());
        let me = self.account();
        let open_blob = async |hash: &Hash, what: &str| -> Result<Vec<u8>, ClientError> {
            let bytes = self.fetch_private(hash).await?;
            let header =
                SealedHeader::parse(&bytes).map_err(|e| private_error(format!("{what}: {e}")))?;
            let wrap = grants
                .iter()
                .filter(|g| g.signer == result.provider)
                .find_map(|g| g.body.key_for(hash, &me))
                .ok_or_else(|| {
                    private_error(format!(
                        "the provider {} granted no key for {what}",
                        result.provider
                    ))
                })?;
            let key = agora_seal::unwrap_key(wrap, &opening, &header)
                .map_err(|e| private_error(format!("{what}: {e}")))?;
            agora_seal::open(&key, &bytes)
                .map(|(_, plain)| plain)
                .map_err(|e| private_error(format!("{what}: {e}")))
        };
        let stdout = open_blob(&result.stdout_hash, "stdout").await?;
        let stderr = open_blob(&result.stderr_hash, "stderr").await?;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| ClientError::io(dir, e))?;
        let mut outputs = Vec::with_capacity(result.outputs.len());
        for output in &result.outputs {
            let name = crate::buyer::safe_file_name(&output.name).ok_or_else(|| {
                private_error(format!(
                    "output name {:?} is not a plain file name",
                    output.name
                ))
            })?;
            let plain = open_blob(&output.hash, &format!("output {name}")).await?;
            let path = dir.join(name);
            tokio::fs::write(&path, plain)
                .await
                .map_err(|e| ClientError::io(&path, e))?;
            outputs.push(path);
        }
        Ok(OpenedResult {
            stdout,
            stderr,
            outputs,
        })
    }

    /// Whether `result` is a private order's: its stdout blob is sealed. Read with this
    /// buyer's access header (a plaintext blob is served whoever asks).
    pub async fn is_sealed_result(&self, result: &JobResult) -> Result<bool, ClientError> {
        let path = format!("/v1/blobs/{}", result.stdout_hash);
        let auth = self.access(&path, None);
        let bytes = self.client().get_signed_bytes(&path, &auth).await?;
        Ok(agora_seal::is_sealed(&bytes).is_some())
    }

    /// A private blob's bytes, read with this buyer's signed access header.
    async fn fetch_private(&self, hash: &Hash) -> Result<Vec<u8>, ClientError> {
        let path = format!("/v1/blobs/{hash}");
        let auth = self.access(&path, None);
        let bytes = self.client().get_signed_bytes(&path, &auth).await?;
        if Hash::of(&bytes) != *hash {
            return Err(ClientError::HashMismatch {
                expected: *hash,
                actual: Hash::of(&bytes),
            });
        }
        Ok(bytes)
    }

    /// The key grants posted for `order_id` whose signatures check out.
    pub async fn key_grants(&self, order_id: Hash) -> Result<Vec<SignedKeyGrant>, ClientError> {
        let path = format!("/v1/orders/{order_id}/keys");
        let auth = self.access(&path, Some(order_id));
        let bytes = self.client().get_signed_bytes(&path, &auth).await?;
        let hexes: Vec<String> =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
                what: format!("GET {path}"),
                detail: e.to_string(),
            })?;
        let chain = self.chain().clone();
        Ok(hexes
            .iter()
            .filter_map(|h| agora_proto::hexed::decode::<SignedKeyGrant>(h, "key grant").ok())
            .filter(|g| g.verify(&chain).is_ok() && g.body.order_id == order_id)
            .collect())
    }

    fn access(&self, path: &str, order: Option<Hash>) -> String {
        BlobAccess::header(self.key(), self.chain(), "GET", path, order, now_ms())
    }

    /// Runs `request` as a private order: seals and uploads its inputs, submits, grants
    /// the input keys to each provider the order is assigned to while following it, and
    /// opens the result into the directory `out_dir` names for the order.
    pub async fn run_private_job(
        &self,
        request: &JobRequest,
        out_dir: impl FnOnce(&Hash) -> PathBuf,
        mut on_event: impl FnMut(&OrderEvent),
    ) -> Result<JobSummary, ClientError> {
        if request.inputs.is_empty() {
            return Err(private_error(
                "a private order seals its inputs and has none; give it an input (or run it without --private)",
            ));
        }
        let scratch = scratch_dir().await?;
        let (job, sealed) = self.upload_job_sealed(request, &scratch).await?;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        let body = request.order_request(job, now_ms())?;
        let submitted = self.submit(body).await?;
        let id = submitted.order_id;
        let (assigned, mut to_grant) = tokio::sync::mpsc::unbounded_channel::<AccountId>();
        // The closure owns the sender, so the channel closes when the order is final and
        // the grant loop below ends with it.
        let on_event = &mut on_event;
        let follow = self.wait(&id, move |event| {
            if matches!(event.state, OrderState::Matched | OrderState::Running)
                && let Some(provider) = event.provider
            {
                let _ = assigned.send(provider);
            }
            on_event(event);
        });
        let grants = async {
            let mut granted = HashSet::new();
            let mut failures = Vec::new();
            while let Some(provider) = to_grant.recv().await {
                if granted.insert(provider)
                    && let Err(e) = self.grant_inputs(id, provider, &sealed).await
                {
                    failures.push(format!("granting keys to {provider}: {e}"));
                }
            }
            failures
        };
        let (view, failures) = tokio::join!(follow, grants);
        let view = view?;
        for failure in failures {
            self.notice(&failure);
        }
        let mut summary = JobSummary::from_view(&view, Vec::new());
        if let (Some(result), OrderState::Settled) = (&view.result, view.state) {
            let opened = self.open_result(id, result, &out_dir(&id)).await?;
            summary.stdout = Some(String::from_utf8_lossy(&opened.stdout).into_owned());
            summary.stderr = Some(String::from_utf8_lossy(&opened.stderr).into_owned());
            summary.outputs = opened.outputs;
        }
        Ok(summary)
    }
}

/// A fresh scratch directory for the sealed copies being uploaded (ciphertext only).
async fn scratch_dir() -> Result<PathBuf, ClientError> {
    let key = DataKey::generate().map_err(|e| private_error(e.to_string()))?;
    let unique = hex::encode(&key.as_bytes()[..8]);
    let dir = std::env::temp_dir().join(format!("agora-sealing-{unique}"));
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ClientError::io(&dir, e))?;
    Ok(dir)
}

/// Seals the file at `from` into `to`, streaming (constant memory whatever its size).
async fn seal_file(
    key: &DataKey,
    owner: AccountId,
    from: &Path,
    to: &Path,
) -> Result<(), ClientError> {
    let (key, from, to) = (key.clone(), from.to_owned(), to.to_owned());
    tokio::task::spawn_blocking(move || {
        let reader = std::fs::File::open(&from).map_err(|e| ClientError::io(&from, e))?;
        let writer = std::fs::File::create(&to).map_err(|e| ClientError::io(&to, e))?;
        agora_seal::seal_stream(
            &key,
            owner,
            std::io::BufReader::new(reader),
            std::io::BufWriter::new(writer),
        )
        .map(|_| ())
        .map_err(|e| private_error(format!("sealing {}: {e}", from.display())))
    })
    .await
    .map_err(|e| private_error(format!("the sealing thread failed: {e}")))?
}
