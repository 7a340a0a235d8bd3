//! Properties shared by the targets.

use std::any::type_name;
use std::fmt::Debug;

use agora_core::{Domain, Hash, Keypair, Signed, canonical};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decodes `data` canonically; when it decodes, checks that the value round-trips through
/// its canonical encoding, that the encoding is a fixpoint and that trailing bytes are
/// refused. Returns the value.
pub fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let value: T = canonical::decode(data).ok()?;
    let name = type_name::<T>();
    let bytes = canonical::encode(&value);
    let again: T = canonical::decode(&bytes)
        .unwrap_or_else(|e| panic!("the encoding of a decoded {name} does not decode: {e}"));
    assert_eq!(again, value, "decode(encode(x)) != x for a {name}");
    assert_eq!(
        canonical::encode(&again),
        bytes,
        "re-encoding a {name} changes its canonical bytes"
    );
    if cfg!(feature = "strict") {
        assert_eq!(bytes, data, "non-canonical bytes decoded as a {name}");
    }
    let mut longer = data.to_vec();
    longer.push(0);
    assert!(
        canonical::decode::<T>(&longer).is_err(),
        "a {name} with a trailing byte decoded"
    );
    Some(value)
}

/// The JSON form of `value` decodes back to it (the HTTP API's and the CLI's `--json`).
pub fn json_round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let name = type_name::<T>();
    let json = serde_json::to_vec(value)
        .unwrap_or_else(|e| panic!("a decoded {name} does not serialize to JSON: {e}"));
    let back: T = serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("the JSON of a {name} does not decode: {e}"));
    assert_eq!(&back, value, "a {name} changes through JSON");
}

/// The key the targets re-sign decoded envelopes with.
pub fn fuzz_key() -> Keypair {
    Keypair::from_seed("agora-fuzz")
}

/// Verifies `env` as a receiver would (no panic whatever it holds), and checks that batch
/// verification never accepts what strict verification refuses.
pub fn verify_any<T>(env: &Signed<T>)
where
    T: Serialize + Domain,
{
    let strict = env.verify(&env.chain_id);
    let _ = env.id();
    let bytes = env.signing_bytes();
    let batch = agora_core::identity::verify_batch(&[&bytes], &[env.signature], &[env.signer]);
    if batch.is_ok() {
        assert!(
            strict.is_ok(),
            "batch verification accepted a signature that strict verification refuses: {strict:?}"
        );
    }
    if let Ok(key) = env.signer.prepare() {
        let prepared =
            agora_core::identity::verify_batch_prepared(&[&bytes], &[env.signature], &[key]);
        if prepared.is_ok() {
            assert!(
                strict.is_ok(),
                "prepared batch verification accepted what strict verification refuses"
            );
        }
    }
}

/// Re-signs `env`'s body with the fuzz key (same chain and nonce), checks that it
/// verifies there and nowhere else, then flips `mask` into byte `position` of its encoding:
/// if that still decodes to a different envelope, it must fail verification.
pub fn tamper<T>(env: &Signed<T>, position: usize, mask: u8)
where
    T: Serialize + DeserializeOwned + Domain + Clone + PartialEq + Debug,
{
    let signed = Signed::sign(&fuzz_key(), &env.chain_id, env.nonce, env.body.clone());
    assert!(
        signed.verify(&signed.chain_id).is_ok(),
        "a freshly signed {} does not verify",
        type_name::<T>()
    );
    let mut other = signed.chain_id.clone();
    other.0.push('x');
    assert!(signed.verify(&other).is_err(), "verified on another chain");
    let mut bytes = canonical::encode(&signed);
    let at = position % bytes.len();
    bytes[at] ^= mask.max(1);
    if let Ok(changed) = canonical::decode::<Signed<T>>(&bytes)
        && changed != signed
    {
        assert!(
            changed.verify(&changed.chain_id).is_err(),
            "a {} changed at byte {at} still verifies",
            type_name::<T>()
        );
    }
}

/// A byte position and a mask for [`tamper`], derived from the input so that the fuzzer
/// reaches every byte without the target spending input on it.
pub fn tamper_spot(data: &[u8]) -> (usize, u8) {
    let h = Hash::of(data).0;
    (usize::from(u16::from_le_bytes([h[0], h[1]])), h[2] | 1)
}
