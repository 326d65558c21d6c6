//! The security team's rules: which fields of which topics are encrypted, under which key and
//! algorithm, and which fields each consumer profile may see. See `docs/POLICY.md`.

mod path;
pub mod signed;
pub mod source;

pub(crate) use path::{ConcretePath, FieldStep};
pub use path::{FieldPath, Segment};
pub use signed::{PolicySignature, PolicyVerifier, PublicKey, SignedPolicy, SigningKey, Verification, VerifiedPolicy};
pub use source::{Fetched, FileSource, HttpsSource, MemorySource, PolicySource};

use std::collections::BTreeMap;
use std::path::Path as FsPath;

use serde::Deserialize;

use crate::crypto::Algorithm;
use crate::error::{Error, Result};
use crate::kms::KekUri;

/// The policy document versions this build understands.
pub const POLICY_FORMAT_VERSION: u32 = 1;

/// Which part of a Kafka record a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Value,
    Key,
}

impl Part {
    pub(crate) fn code(self) -> u8 {
        match self {
            Part::Value => 0,
            Part::Key => 1,
        }
    }
    pub(crate) fn from_code(code: u8) -> Option<Part> {
        match code {
            0 => Some(Part::Value),
            1 => Some(Part::Key),
            _ => None,
        }
    }
}

/// What a consumer sees in place of a field it may not or cannot decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// Leave the ciphertext in place (default).
    Ciphertext,
    /// Replace the field with `null`.
    Null,
    /// Replace the field with a fixed string.
    Mask(String),
    /// Fail the record: with the reason the key could not be had (`key_not_found`,
    /// `access_denied`), or `access_denied` when the profile does not list the field. For
    /// consumers that must see every field or nothing, like Confluent's `onFailure: ERROR`.
    Error,
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    id: String,
    revision: u64,
    rules: Vec<EncryptRule>,
    profiles: BTreeMap<String, Profile>,
}

/// One encryption rule.
#[derive(Debug, Clone)]
pub struct EncryptRule {
    pub name: String,
    pub topics: Vec<TopicPattern>,
    pub part: Part,
    pub fields: Vec<FieldPath>,
    pub tags: Vec<String>,
    pub key: KekUri,
    pub algorithm: Algorithm,
    /// When set, every data subject gets its own data key, held in the key store, so that one
    /// subject's records can be shredded (docs/SHREDDING.md).
    pub subject: Option<Subject>,
}

/// Where a rule finds a record's data subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// The Kafka record key (its bytes as text): `"subject": "$key"`.
    RecordKey,
    /// A top-level member of a JSON record value (schemaless or JSON Schema), a string or a
    /// number: `"subject": "customer_id"`.
    Member(String),
}

/// A named decryption profile: the fields a kind of consumer may see decrypted.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub decrypt: Vec<DecryptRule>,
    pub otherwise: Fallback,
}

/// Fields of matching topics that a profile decrypts; `fields: None` means every field.
#[derive(Debug, Clone)]
pub struct DecryptRule {
    pub topics: Vec<TopicPattern>,
    pub part: Option<Part>,
    pub fields: Option<Vec<FieldPath>>,
}

/// An exact topic name or a glob with `*` (any run of characters) and `?` (one character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern(String);

impl TopicPattern {
    pub fn matches(&self, topic: &str) -> bool {
        glob_match(self.0.as_bytes(), topic.as_bytes())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative glob with single-star backtracking: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

// ---- the document as written -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    fieldcrypt_policy: u32,
    id: String,
    #[serde(default)]
    revision: u64,
    #[serde(default)]
    encrypt: Vec<EncryptRuleDoc>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptRuleDoc {
    name: String,
    topics: Vec<String>,
    #[serde(default = "default_part")]
    part: Part,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    key: String,
    #[serde(default = "default_algorithm")]
    algorithm: String,
    #[serde(default)]
    subject: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileDoc {
    #[serde(default)]
    decrypt: Vec<DecryptRuleDoc>,
    #[serde(default)]
    otherwise: Option<String>,
    #[serde(default)]
    mask: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecryptRuleDoc {
    topics: Vec<String>,
    #[serde(default)]
    part: Option<Part>,
    #[serde(default)]
    fields: Option<Vec<String>>,
}

fn default_part() -> Part {
    Part::Value
}
fn default_algorithm() -> String {
    "AES256_GCM".into()
}

impl Policy {
    /// Loads a policy from its JSON text. Every problem is reported with the rule it is in.
    pub fn from_json(text: &str) -> Result<Policy> {
        let doc: PolicyDoc =
            serde_json::from_str(text).map_err(|e| Error::policy(format!("policy is not valid: {e}")))?;
        Policy::from_doc(doc)
    }

    pub fn from_file(path: impl AsRef<FsPath>) -> Result<Policy> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::policy(format!("cannot read policy file {}: {e}", path.display())))?;
        Policy::from_json(&text)
    }

    fn from_doc(doc: PolicyDoc) -> Result<Policy> {
        if doc.fieldcrypt_policy != POLICY_FORMAT_VERSION {
            return Err(Error::policy(format!(
                "policy format version {} is not supported (this build reads version {POLICY_FORMAT_VERSION})",
                doc.fieldcrypt_policy
            )));
        }
        if doc.id.is_empty() || doc.id.len() > 255 {
            return Err(Error::policy("policy id must be 1 to 255 bytes"));
        }
        let mut rules = Vec::with_capacity(doc.encrypt.len());
        for (n, r) in doc.encrypt.into_iter().enumerate() {
            let ctx = if r.name.is_empty() {
                format!("encrypt rule #{}", n + 1)
            } else {
                format!("encrypt rule {:?}", r.name)
            };
            if rules.iter().any(|x: &EncryptRule| x.name == r.name) {
                return Err(Error::policy(format!("{ctx}: rule names must be unique")));
            }
            let topics = parse_topics(&r.topics).map_err(|e| Error::policy(format!("{ctx}: {e}")))?;
            let fields = parse_paths(&r.fields).map_err(|e| Error::policy(format!("{ctx}: {e}")))?;
            if fields.is_empty() && r.tags.is_empty() {
                return Err(Error::policy(format!("{ctx}: give at least one of \"fields\" or \"tags\"")));
            }
            if let Some(t) = r.tags.iter().find(|t| t.is_empty()) {
                return Err(Error::policy(format!("{ctx}: tag {t:?} is empty")));
            }
            for (i, a) in fields.iter().enumerate() {
                if let Some(b) = fields[i + 1..].iter().find(|b| a.overlaps(b)) {
                    return Err(Error::policy(format!("{ctx}: paths {a} and {b} overlap")));
                }
            }
            let key = KekUri::parse(&r.key).map_err(|e| Error::policy(format!("{ctx}: {e}")))?;
            let algorithm = Algorithm::from_name(&r.algorithm).ok_or_else(|| {
                Error::policy(format!("{ctx}: unknown algorithm {:?} (use AES256_GCM or AES256_SIV)", r.algorithm))
            })?;
            let subject = match r.subject.as_deref() {
                None => None,
                Some("$key") => Some(Subject::RecordKey),
                Some("") => return Err(Error::policy(format!("{ctx}: \"subject\" is empty"))),
                Some(member) => {
                    // The subject must stay readable: it is how the data is found and shredded.
                    if fields.iter().any(|f| f.as_str() == member || f.as_str().starts_with(&format!("{member}."))) {
                        return Err(Error::policy(format!(
                            "{ctx}: the subject member {member:?} may not be encrypted"
                        )));
                    }
                    Some(Subject::Member(member.to_string()))
                }
            };
            if subject.is_some() && algorithm.is_deterministic() {
                // A deterministic key is derived from the KEK, the same for every subject.
                return Err(Error::policy(format!("{ctx}: per-subject keys need AES256_GCM")));
            }
            rules.push(EncryptRule {
                name: r.name,
                topics,
                part: r.part,
                fields,
                tags: r.tags,
                key,
                algorithm,
                subject,
            });
        }
        let mut profiles = BTreeMap::new();
        for (name, p) in doc.profiles {
            let ctx = format!("profile {name:?}");
            let otherwise = match (p.otherwise.as_deref(), p.mask) {
                (None | Some("ciphertext"), None) => Fallback::Ciphertext,
                (Some("null"), None) => Fallback::Null,
                (Some("error"), None) => Fallback::Error,
                (Some("mask"), mask) => Fallback::Mask(mask.unwrap_or_else(|| "****".into())),
                (Some(other), None) => {
                    return Err(Error::policy(format!(
                        "{ctx}: \"otherwise\" must be \"ciphertext\", \"null\", \"mask\" or \"error\", not {other:?}"
                    )))
                }
                (_, Some(_)) => return Err(Error::policy(format!("{ctx}: \"mask\" needs \"otherwise\": \"mask\""))),
            };
            let mut decrypt = Vec::new();
            for (n, d) in p.decrypt.into_iter().enumerate() {
                let rctx = format!("{ctx}, decrypt rule #{}", n + 1);
                let topics = parse_topics(&d.topics).map_err(|e| Error::policy(format!("{rctx}: {e}")))?;
                let fields = match d.fields {
                    Some(f) => Some(parse_paths(&f).map_err(|e| Error::policy(format!("{rctx}: {e}")))?),
                    None => None,
                };
                decrypt.push(DecryptRule { topics, part: d.part, fields });
            }
            profiles.insert(name.clone(), Profile { name, decrypt, otherwise });
        }
        Ok(Policy { id: doc.id, revision: doc.revision, rules, profiles })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn revision(&self) -> u64 {
        self.revision
    }
    pub fn rules(&self) -> &[EncryptRule] {
        &self.rules
    }
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    /// The rules that apply to `topic`, in document order. Rejects a topic on which two rules
    /// would encrypt overlapping paths (the ciphertexts would nest).
    pub(crate) fn rules_for(&self, topic: &str) -> Result<Vec<&EncryptRule>> {
        let rules: Vec<&EncryptRule> =
            self.rules.iter().filter(|r| r.topics.iter().any(|t| t.matches(topic))).collect();
        for (i, a) in rules.iter().enumerate() {
            for b in &rules[i + 1..] {
                if a.part != b.part {
                    continue;
                }
                for pa in &a.fields {
                    if let Some(pb) = b.fields.iter().find(|pb| pa.overlaps(pb)) {
                        return Err(Error::policy(format!(
                            "encrypt rules {:?} and {:?} both apply to topic {topic:?} with overlapping paths {pa} and {pb}",
                            a.name, b.name
                        )));
                    }
                }
            }
        }
        Ok(rules)
    }
}

impl Profile {
    /// Whether this profile decrypts `path` (as recorded in a header) of `part` in `topic`.
    pub fn allows(&self, topic: &str, part: Part, path: &str) -> bool {
        self.decrypt.iter().any(|r| {
            r.topics.iter().any(|t| t.matches(topic))
                && r.part.is_none_or(|p| p == part)
                && r.fields.as_ref().is_none_or(|fields| fields.iter().any(|f| f.as_str() == path))
        })
    }
}

fn parse_topics(topics: &[String]) -> Result<Vec<TopicPattern>, String> {
    if topics.is_empty() {
        return Err("\"topics\" is empty".into());
    }
    topics
        .iter()
        .map(|t| {
            if t.is_empty() || t.len() > 249 {
                Err(format!("topic pattern {t:?} must be 1 to 249 characters"))
            } else {
                Ok(TopicPattern(t.clone()))
            }
        })
        .collect()
}

fn parse_paths(paths: &[String]) -> Result<Vec<FieldPath>, String> {
    paths.iter().map(|p| FieldPath::parse(p).map_err(|e| format!("bad path {p:?}: {e}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rule: &str) -> Result<Policy> {
        Policy::from_json(&format!(r#"{{"fieldcrypt_policy":1,"id":"t","encrypt":[{rule}]}}"#))
    }

    #[test]
    fn globs() {
        let t = |p: &str, s: &str| TopicPattern(p.into()).matches(s);
        assert!(t("customers", "customers"));
        assert!(!t("customers", "customers2"));
        assert!(t("customers*", "customers-eu"));
        assert!(t("*.pii.*", "eu.pii.orders"));
        assert!(t("c?stomers", "customers"));
        assert!(!t("a*b", "acbx"));
    }

    #[test]
    fn errors_name_the_rule() {
        let e = policy(r#"{"name":"cards","topics":["t"],"fields":["visa"],"key":"foo://x"}"#).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Policy);
        assert!(e.message().contains("\"cards\"") && e.message().contains("foo"), "{e}");
        let e = policy(r#"{"name":"cards","topics":["t"],"fields":["a..b"],"key":"local://k"}"#).unwrap_err();
        assert!(e.message().contains("\"cards\"") && e.message().contains("a..b"), "{e}");
        let e = policy(r#"{"name":"cards","topics":["t"],"fields":["a"],"key":"local://k","algorithm":"DES"}"#)
            .unwrap_err();
        assert!(e.message().contains("\"cards\"") && e.message().contains("DES"), "{e}");
        let e = policy(r#"{"name":"cards","topics":["t"],"fields":["a"],"key":"local://k","typo":1}"#).unwrap_err();
        assert!(e.message().contains("typo"), "{e}");
    }

    #[test]
    fn overlapping_rules_are_rejected_per_topic() {
        let p = Policy::from_json(
            r#"{"fieldcrypt_policy":1,"id":"t","encrypt":[
                {"name":"a","topics":["c*"],"fields":["address"],"key":"local://k"},
                {"name":"b","topics":["customers"],"fields":["address.street"],"key":"local://k"}]}"#,
        )
        .unwrap();
        assert!(p.rules_for("cars").unwrap().len() == 1);
        assert_eq!(p.rules_for("customers").unwrap_err().kind(), crate::ErrorKind::Policy);
    }
}
