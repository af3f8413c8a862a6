//! The seal a batch carries in its metadata: an HMAC-SHA256, under a secret only this
//! installation holds, of the cluster, database, table and submission the metadata names. Anyone
//! holding the API key can list the account's batches and copy their metadata, but cannot seal a
//! batch of their own: adoption takes only sealed batches, so a forged one is never adopted
//! (its papers are never claimed, its vectors never written).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a seal covers, one field per line (no field holds a newline: the caller checks).
fn message(fields: &[&str]) -> Vec<u8> {
    fields.join("\n").into_bytes()
}

/// The seal of `fields` under `secret`, as 64 lower-case hex digits.
pub fn seal(secret: &[u8], fields: &[&str]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(&message(fields));
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `seal_hex` is the seal of `fields` under `secret` (compared in constant time).
pub fn verify(secret: &[u8], fields: &[&str], seal_hex: &str) -> bool {
    if seal_hex.len() != 64 || !seal_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&seal_hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(&message(fields));
    mac.verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_seal_is_rfc_4231_s_hmac_sha256() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            seal(b"Jefe", &["what do ya want for nothing?"]),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_seal_holds_only_for_its_own_secret_and_fields() {
        let fields = ["6800000000000000001/16384", "papers", "public.doctrove_papers", "s-1"];
        let s = seal(b"secret", &fields);
        assert!(verify(b"secret", &fields, &s));
        assert!(verify(b"secret", &fields, &s.to_uppercase()));
        assert!(!verify(b"another secret", &fields, &s));
        let mut other = fields;
        other[3] = "s-2";
        assert!(!verify(b"secret", &other, &s));
        assert!(!verify(b"secret", &fields, ""));
        assert!(!verify(b"secret", &fields, &"zz".repeat(32)));
    }

    proptest! {
        /// Any change of one field breaks the seal.
        #[test]
        fn changing_any_field_breaks_the_seal(fields in proptest::collection::vec("[a-z0-9/._-]{0,20}", 4), i in 0usize..4, extra in "[a-z]{1,5}") {
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            let s = seal(b"k", &refs);
            let changed = format!("{}{extra}", fields[i]);
            let mut other = refs.clone();
            other[i] = &changed;
            prop_assert!(verify(b"k", &refs, &s));
            prop_assert!(!verify(b"k", &other, &s));
        }
    }
}
