//! Audit events: what a security team needs to see — policies loaded and rejected, data keys
//! created, rotated and shredded, decryption denied — with ids, KEK URIs, revisions and
//! reasons, never plaintext, key material or policy text.
//!
//! Every event goes to `tracing` (target `fieldcrypt::audit`, field `event` = the event's name,
//! its other fields typed) and to the process's audit hook if one is set ([`set_hook`]), so an
//! application can forward events to its SIEM without a `tracing` subscriber.

use std::sync::{Arc, RwLock};

use serde::Serialize;

/// One audit event. Serializes to JSON as `{"event": NAME, ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// A policy was loaded (at start or by a hot reload).
    PolicyLoaded {
        policy_id: String,
        revision: u64,
        previous_revision: Option<u64>,
        signed_by: Option<String>,
        source: String,
    },
    /// A policy was refused (unsigned, bad signature, older revision, unparsable...); the last
    /// good policy stays in force.
    PolicyRejected {
        policy_id: Option<String>,
        revision: Option<u64>,
        offered_revision: Option<u64>,
        source: String,
        reason: String,
    },
    /// Policies from this source are not signature-checked (development only).
    PolicyVerificationDisabled { source: String },
    /// A producer made a new data key (inline in headers).
    DekCreated { kek: String, kek_version: String, dek_id: String, algorithm: String },
    /// A producer could not rotate its data key (KMS failing) and serves on with the current one
    /// within its outage budget, or fails closed.
    DekRotationDeferred { kek: String, serving_current: bool, reason: String },
    /// A data key for a data subject was stored in the key store.
    KeyCreated { kek: String, dek_id: String, subject: String },
    /// A data subject's key was rotated (a new key stored; older ones still decrypt).
    KeyRotated { kek: String, dek_id: String, subject: String },
    /// A data subject was shredded: its keys deleted from the key store.
    SubjectShredded { subject: String, keys: usize },
    /// A consumer could not have a data key (access denied, unknown, shredded).
    DecryptionDenied { kek: String, dek_id: String, reason: String },
}

impl AuditEvent {
    /// The event's name, as `tracing`'s `event` field and the JSON `event` member carry it.
    pub fn name(&self) -> &'static str {
        match self {
            AuditEvent::PolicyLoaded { .. } => "policy_loaded",
            AuditEvent::PolicyRejected { .. } => "policy_rejected",
            AuditEvent::PolicyVerificationDisabled { .. } => "policy_verification_disabled",
            AuditEvent::DekCreated { .. } => "dek_created",
            AuditEvent::DekRotationDeferred { .. } => "dek_rotation_deferred",
            AuditEvent::KeyCreated { .. } => "key_created",
            AuditEvent::KeyRotated { .. } => "key_rotated",
            AuditEvent::SubjectShredded { .. } => "subject_shredded",
            AuditEvent::DecryptionDenied { .. } => "decryption_denied",
        }
    }

    /// The event as one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"event\":\"{}\"}}", self.name()))
    }
}

type Hook = Arc<dyn Fn(&AuditEvent) + Send + Sync>;

static HOOK: RwLock<Option<Hook>> = RwLock::new(None);

/// Sends every audit event of this process to `hook` too (replacing any earlier hook). The hook
/// runs on the thread that caused the event: keep it quick (queue, don't block).
pub fn set_hook(hook: impl Fn(&AuditEvent) + Send + Sync + 'static) {
    *HOOK.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
}

/// Removes the audit hook.
pub fn clear_hook() {
    *HOOK.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Records an event: `tracing` first, then the hook.
pub(crate) fn emit(event: AuditEvent) {
    const T: &str = "fieldcrypt::audit";
    let name = event.name();
    match &event {
        AuditEvent::PolicyLoaded { policy_id, revision, previous_revision, signed_by, source } => tracing::info!(
            target: T, event = name, %policy_id, revision, previous_revision, signed_by = signed_by.as_deref().unwrap_or("(not verified)"), %source
        ),
        AuditEvent::PolicyRejected { policy_id, revision, offered_revision, source, reason } => tracing::warn!(
            target: T, event = name, policy_id = policy_id.as_deref().unwrap_or("(none loaded)"), revision, offered_revision, %source, %reason
        ),
        AuditEvent::PolicyVerificationDisabled { source } => {
            tracing::warn!(target: T, event = name, %source, "policy signatures are not verified: development only")
        }
        AuditEvent::DekCreated { kek, kek_version, dek_id, algorithm } => {
            tracing::info!(target: T, event = name, %kek, %kek_version, %dek_id, %algorithm)
        }
        AuditEvent::DekRotationDeferred { kek, serving_current, reason } => {
            tracing::warn!(target: T, event = name, %kek, serving_current, %reason)
        }
        AuditEvent::KeyCreated { kek, dek_id, subject } | AuditEvent::KeyRotated { kek, dek_id, subject } => {
            tracing::info!(target: T, event = name, %kek, %dek_id, %subject)
        }
        AuditEvent::SubjectShredded { subject, keys } => tracing::info!(target: T, event = name, %subject, keys),
        AuditEvent::DecryptionDenied { kek, dek_id, reason } => {
            tracing::info!(target: T, event = name, %kek, %dek_id, %reason)
        }
    }
    let hook = HOOK.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(hook) = hook {
        hook(&event);
    }
}
