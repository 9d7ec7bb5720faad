//! Sample traffic for `burrow demo`: a realistic mix of order events, most of them valid JSON
//! objects, some broken the ways real producers break them.
//!
//! The mix is deterministic for a seed so a demo run can be compared with the next one, and
//! every sample says whether a JSON-object validator should accept it, so the demo can check
//! its own result against the topics.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One message to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Partitioning key: the customer, so one customer's orders stay in order.
    pub key: Vec<u8>,
    /// Payload.
    pub value: Vec<u8>,
    /// Whether it is a JSON object (what `json-validate` commits).
    pub valid: bool,
}

/// How samples go wrong, and how often (out of 100).
const TRUNCATED: u32 = 6;
const NOT_AN_OBJECT: u32 = 5;
const NOT_UTF8: u32 = 2;
const TRAILING_GARBAGE: u32 = 2;

/// `count` samples from `seed`; about 85% valid.
pub fn samples(count: usize, seed: u64) -> Vec<Sample> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|i| sample(&mut rng, i)).collect()
}

fn sample(rng: &mut StdRng, index: usize) -> Sample {
    let customer = rng.random_range(1..=50u32);
    let key = format!("customer-{customer}").into_bytes();
    let order = order_json(rng, index, customer);
    let roll = rng.random_range(0..100u32);
    let (value, valid) = if roll < TRUNCATED {
        let cut = rng.random_range(1..order.len());
        (order.as_bytes()[..cut].to_vec(), false)
    } else if roll < TRUNCATED + NOT_AN_OBJECT {
        (not_an_object(rng, &order), false)
    } else if roll < TRUNCATED + NOT_AN_OBJECT + NOT_UTF8 {
        let mut bytes = order.into_bytes();
        bytes.insert(bytes.len() / 2, 0xff);
        (bytes, false)
    } else if roll < TRUNCATED + NOT_AN_OBJECT + NOT_UTF8 + TRAILING_GARBAGE {
        (format!("{order}}}").into_bytes(), false)
    } else {
        (order.into_bytes(), true)
    };
    Sample { key, value, valid }
}

fn order_json(rng: &mut StdRng, index: usize, customer: u32) -> String {
    const SKUS: [&str; 6] = [
        "burrow-mug",
        "mole-tshirt",
        "tunnel-map",
        "lamp",
        "spade",
        "boots",
    ];
    let items: Vec<String> = (0..rng.random_range(1..=4))
        .map(|_| {
            let sku = SKUS[rng.random_range(0..SKUS.len())];
            let qty = rng.random_range(1..=3);
            format!(r#"{{"sku":"{sku}","qty":{qty}}}"#)
        })
        .collect();
    let cents = rng.random_range(199..=49_999u32);
    format!(
        r#"{{"order_id":"ord-{index:06}","customer":"customer-{customer}","amount":{}.{:02},"currency":"EUR","items":[{}]}}"#,
        cents / 100,
        cents % 100,
        items.join(",")
    )
}

fn not_an_object(rng: &mut StdRng, order: &str) -> Vec<u8> {
    match rng.random_range(0..3) {
        0 => format!("[{order}]").into_bytes(),
        1 => b"\"order cancelled\"".to_vec(),
        _ => b"null".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_json_object(bytes: &[u8]) -> bool {
        serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.is_object())
    }

    /// Each sample's `valid` flag agrees with an actual JSON parser.
    #[test]
    fn valid_flag_matches_a_json_parser() {
        for s in samples(2_000, 7) {
            assert_eq!(
                s.valid,
                is_json_object(&s.value),
                "{:?}",
                String::from_utf8_lossy(&s.value)
            );
        }
    }

    /// The mix is mostly valid but has every kind of failure, and is the same for a seed.
    #[test]
    fn mix_is_realistic_and_deterministic() {
        let a = samples(2_000, 7);
        assert_eq!(a, samples(2_000, 7));
        let valid = a.iter().filter(|s| s.valid).count();
        assert!((1_500..1_900).contains(&valid), "{valid} valid of 2000");
        assert!(a.iter().any(|s| std::str::from_utf8(&s.value).is_err()));
        assert!(a.iter().any(|s| s.value.starts_with(b"[")));
    }
}
