//! The policy-set hash recomputed from its documented preimage (docs/policy.md, "The
//! policy-set hash"): SHA-256 (hex) over `mnsensor-policy-set/v1\n` followed by each document
//! in set order as canonical JSON (keys sorted, no whitespace) plus `\n`. The YAML is read
//! with serde-saphyr, not with the sensor's own parser, so the test does not share its code.
use std::{fmt::Write as _, fs, path::Path};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Canonical JSON: object keys sorted, no whitespace.
pub fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The hash of a set made of `files` (YAML texts, in set order; one or more documents each).
pub fn of_texts(files: &[String]) -> String {
    let mut preimage = String::from("mnsensor-policy-set/v1\n");
    for text in files {
        // YAML 1.2 scalars: only `true`/`false` are booleans, `0644` stays a string.
        let options = serde_saphyr::options! { strict_booleans: true, leading_zero_numbers_as_strings: true };
        let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
            .unwrap_or_else(|e| panic!("policy text is not YAML ({e}):\n{text}"));
        for doc in docs {
            canonical(&doc, &mut preimage);
            preimage.push('\n');
        }
    }
    let digest = Sha256::digest(preimage.as_bytes());
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The hash of the policy directory `dir`: its `*.yaml`/`*.yml` files not starting with `.`,
/// in byte-wise order of their names (docs/policy.md, "Which files", "Order").
pub fn of_dir(dir: &Path) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().into_string().expect("UTF-8 name"))
        .filter(|n| !n.starts_with('.') && (n.ends_with(".yaml") || n.ends_with(".yml")))
        .collect();
    names.sort();
    let texts: Vec<String> = names
        .iter()
        .map(|n| fs::read_to_string(dir.join(n)).unwrap_or_else(|e| panic!("read {n}: {e}")))
        .collect();
    of_texts(&texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_comments_and_key_order_do_not_change_the_hash_values_do() {
        let a = of_texts(&["a: 1\nb: [x, \"y\"]\n".to_owned()]);
        let b = of_texts(&["# comment\nb:\n  - x\n  - y\na: 1\n".to_owned()]);
        let c = of_texts(&["a: 2\nb: [x, y]\n".to_owned()]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The preimage spelled out (`printf 'mnsensor-policy-set/v1\n{"a":1}\n' | sha256sum`).
        assert_eq!(
            of_texts(&["a: 1\n".to_owned()]),
            "4ab1b83e89dc457e5fd90d5a3f8e320eda04a87e89b055303abec8c277ee8f52"
        );
    }
}
