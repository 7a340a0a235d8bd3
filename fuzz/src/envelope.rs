//! `Signed<T>` envelopes (agora-core): decoding, verification, tampering.
//!
//! Input: two bytes of tamper position (little endian), one byte of mask, then the
//! canonical bytes of a `Signed<JobFailure>` (a body with text, a flag and numbers).

use agora_core::Signed;
use agora_proto::wire::JobFailure;

use crate::common::{round_trip, tamper, verify_any};

/// See the module docs.
pub fn check(data: &[u8]) {
    let [lo, hi, mask, rest @ ..] = data else {
        return;
    };
    let Some(env) = round_trip::<Signed<JobFailure>>(rest) else {
        return;
    };
    verify_any(&env);
    tamper(&env, usize::from(u16::from_le_bytes([*lo, *hi])), *mask);
}
