//! Free-form `metadata` a tenant attaches to its objects, with Stripe's limits so that
//! integrations written for Stripe behave the same here.

use crate::kernel::error::ErrorCode;
use std::collections::BTreeMap;

use crate::kernel::error::ValidationError;

pub const MAX_KEYS: usize = 50;
pub const MAX_KEY_CHARS: usize = 40;
pub const MAX_VALUE_CHARS: usize = 500;

pub type Metadata = BTreeMap<String, String>;

pub fn validate(metadata: &Metadata) -> Result<(), ValidationError> {
    if metadata.len() > MAX_KEYS {
        return Err(ValidationError::new(
            ErrorCode::MetadataTooLarge,
            "metadata",
            format!(
                "metadata has {} keys; at most {MAX_KEYS} are allowed",
                metadata.len()
            ),
        ));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            return Err(ValidationError::new(
                ErrorCode::InvalidMetadataKey,
                format!("metadata.{key}"),
                format!("metadata keys must be 1 to {MAX_KEY_CHARS} characters"),
            ));
        }
        if value.chars().count() > MAX_VALUE_CHARS {
            return Err(ValidationError::new(
                ErrorCode::InvalidMetadataValue,
                format!("metadata.{key}"),
                format!("metadata values must be at most {MAX_VALUE_CHARS} characters"),
            ));
        }
    }
    Ok(())
}

/// Applies an update the way Stripe does: keys in `changes` are set, a key set to the
/// empty string is removed, keys not mentioned are kept. The result is validated.
pub fn merge(current: &Metadata, changes: &Metadata) -> Result<Metadata, ValidationError> {
    let mut merged = current.clone();
    for (key, value) in changes {
        if value.is_empty() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    validate(&merged)?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limits_are_enforced_at_the_boundary() {
        let ok: Metadata = (0..MAX_KEYS)
            .map(|i| (format!("k{i}"), "v".into()))
            .collect();
        assert!(validate(&ok).is_ok());
        let mut too_many = ok.clone();
        too_many.insert("one_more".into(), "v".into());
        assert_eq!(validate(&too_many).unwrap_err().code, "metadata_too_large");
        assert!(validate(&md(&[(&"k".repeat(40), "v")])).is_ok());
        let long_key = "k".repeat(41);
        assert_eq!(
            validate(&md(&[(&long_key, "v")])).unwrap_err().param,
            format!("metadata.{long_key}")
        );
        assert!(validate(&md(&[("k", &"v".repeat(500))])).is_ok());
        assert!(validate(&md(&[("k", &"v".repeat(501))])).is_err());
    }

    #[test]
    fn merge_sets_keeps_and_removes() {
        let merged = merge(
            &md(&[("a", "1"), ("b", "2")]),
            &md(&[("b", ""), ("c", "3")]),
        )
        .unwrap();
        assert_eq!(merged, md(&[("a", "1"), ("c", "3")]));
    }
}
