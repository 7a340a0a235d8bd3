//! Text that names things in URLs, query strings, JSON and job specs: hashes
//! (`/v1/blobs/{hash}`, `/v1/orders/{id}`), account ids, amounts, prices, verification
//! policies and the job spec's sizes, prices and durations. Whatever parses prints in its
//! canonical form, which parses back to the same value; values print and parse back.

use std::str::FromStr;

use agora_core::{AccountId, Amount, Hash, Price};
use agora_proto::VerifyPolicy;

/// Parses `text` as `T`; if it parses, its printed form parses back to it.
fn text_round_trip<T>(text: &str) -> Option<T>
where
    T: FromStr + ToString + PartialEq + std::fmt::Debug,
    T::Err: std::fmt::Debug,
{
    let value = text.parse::<T>().ok()?;
    let printed = value.to_string();
    let back = printed
        .parse::<T>()
        .unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) does not parse: {e:?}"));
    assert_eq!(back, value, "{text:?} → {printed:?} changes the value");
    assert_eq!(back.to_string(), printed, "printing is not stable");
    Some(value)
}

/// See the module docs.
pub fn check(data: &[u8]) {
    if data.len() >= 8 {
        // Values the fuzzer picks print and parse back.
        let n = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        text_round_trip::<Amount>(&Amount(n).to_string()).expect("an amount prints parseably");
        text_round_trip::<Price>(&Price(n).to_string()).expect("a price prints parseably");
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&data[..8]);
        let hash = Hash(bytes);
        assert_eq!(hash.to_string().parse::<Hash>().ok(), Some(hash));
        let account = AccountId::from_bytes(bytes);
        assert_eq!(account.to_string().parse::<AccountId>().ok(), Some(account));
        let _ = format!("{account:?} {hash:?}");
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(hash) = text_round_trip::<Hash>(text) {
        assert_eq!(
            hash.to_string(),
            text.trim().to_ascii_lowercase(),
            "a hash is its hex digits"
        );
    }
    text_round_trip::<AccountId>(text);
    text_round_trip::<Amount>(text);
    text_round_trip::<Price>(text);
    if let Some(policy) = text_round_trip::<VerifyPolicy>(text) {
        assert!(policy.validate().is_ok(), "a parsed policy is invalid");
    }
    let _ = agora_client::spec::parse_price(text);
    let _ = agora_client::spec::parse_size(text);
    let _ = agora_client::spec::parse_duration_ms(text);
    let _ = agora_verify::policy::parse_ppm(text);
    let _ = agora_verify::policy::parse_duration_ms(text);
}
