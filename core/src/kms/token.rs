//! What the KMS clients that log in share: a cache of the bearer tokens they obtain (Vault
//! AppRole, Microsoft Entra client credentials, Google service accounts), each with the time it
//! is to be replaced, and the redaction of credentials from text that reaches error messages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind};
use crate::http::SendError;

/// What stands in a message where a credential was.
const REDACTED: &str = "<redacted>";

/// `text` with every one of `secrets` replaced by `<redacted>`. Secrets shorter than 4 bytes are
/// left alone: replacing them would mangle ordinary words and reveal little.
pub(crate) fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        if secret.len() >= 4 {
            out = out.replace(secret, REDACTED);
        }
    }
    out
}

/// A transport failure of the request `what` (after the transport's retries) as an error, with
/// `redact` applied to the transport's description where it may quote the request: unavailable
/// (connection errors, timeouts, 429/5xx) is a retryable `Kms` error, a request that cannot be
/// built a `Config` error, an oversized answer a `Kms` error.
pub(crate) fn transport_error(what: &str, e: &SendError, redact: impl Fn(&str) -> String) -> Error {
    match e {
        SendError::Unavailable { .. } => {
            Error::retryable(ErrorKind::Kms, format!("{what} is unavailable: {}", redact(&e.describe())))
        }
        SendError::Invalid(_) => Error::config(format!("{what}: {}", redact(&e.describe()))),
        SendError::TooLarge { .. } => Error::new(ErrorKind::Kms, format!("{what}: {}", e.describe())),
    }
}

/// Bearer tokens by a key of the client's choosing (a server, a scope), each replaced once its
/// refresh time has passed or the server refused it. Tokens are zeroized when dropped.
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, CachedToken>>,
}

struct CachedToken {
    token: Zeroizing<String>,
    /// Replace after this instant (None: the token does not expire).
    refresh_at: Option<Instant>,
    /// Bumped by every fetch, so threads that saw the same token refused fetch a new one only
    /// once between them.
    generation: u64,
}

impl TokenCache {
    pub(crate) fn new() -> TokenCache {
        TokenCache { tokens: Mutex::new(HashMap::new()) }
    }

    /// The token cached under `key` and its generation, unless there is none, it is due for
    /// refresh, or it is of generation `stale` (a token the server refused): then `fetch` gets a
    /// new one, returning it and the instant after which to replace it (None: never), and it is
    /// cached under the next generation. The lock is held across `fetch`: concurrent callers
    /// wait for one fetch instead of racing.
    pub(crate) fn get_or_fetch<E>(
        &self,
        key: &str,
        stale: Option<u64>,
        fetch: impl FnOnce() -> Result<(Zeroizing<String>, Option<Instant>), E>,
    ) -> Result<(Zeroizing<String>, u64), E> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let mut generation = 0;
        if let Some(cached) = tokens.get(key) {
            let due = cached.refresh_at.is_some_and(|at| Instant::now() >= at);
            if !due && stale != Some(cached.generation) {
                return Ok((cached.token.clone(), cached.generation));
            }
            generation = cached.generation;
        }
        let (token, refresh_at) = fetch()?;
        generation += 1;
        tokens.insert(key.to_string(), CachedToken { token: token.clone(), refresh_at, generation });
        Ok((token, generation))
    }

    /// Drops the token cached under `key`: the next [`TokenCache::get_or_fetch`] fetches one.
    pub(crate) fn forget(&self, key: &str) {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// `text` with `secrets` and every cached token replaced by `<redacted>` (see [`redact`]).
    /// Cached tokens are skipped while the cache is locked (a fetch in progress, possibly by the
    /// caller itself): the token being fetched is not in it yet either.
    pub(crate) fn redact<'a>(&self, text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
        let out = redact(text, secrets);
        match self.tokens.try_lock() {
            Ok(tokens) => redact(&out, tokens.values().map(|t| t.token.as_str())),
            Err(_) => out,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn token(text: &str) -> Zeroizing<String> {
        Zeroizing::new(text.to_string())
    }

    #[test]
    fn redacts_secrets_of_four_bytes_or_more() {
        assert_eq!(
            redact("user abc said s3cr3t twice: s3cr3t", ["s3cr3t", "abc"]),
            "user abc said <redacted> twice: <redacted>"
        );
        assert_eq!(redact("nothing here", []), "nothing here");
    }

    #[test]
    fn caches_until_due_or_refused() {
        let cache = TokenCache::new();
        let fetch = |t: &'static str, at: Option<Instant>| move || Ok::<_, ()>((token(t), at));
        assert_eq!(cache.get_or_fetch("a", None, fetch("tok-1", None)).unwrap(), (token("tok-1"), 1));
        assert_eq!(cache.get_or_fetch("a", None, fetch("unused", None)).unwrap(), (token("tok-1"), 1));
        assert_eq!(cache.get_or_fetch("a", Some(7), fetch("unused", None)).unwrap(), (token("tok-1"), 1));
        // Refused: a new token of the next generation, fetched once.
        assert_eq!(cache.get_or_fetch("a", Some(1), fetch("tok-2", None)).unwrap(), (token("tok-2"), 2));
        assert_eq!(cache.get_or_fetch("a", Some(1), fetch("unused", None)).unwrap(), (token("tok-2"), 2));
        // Keys are apart; a token past its refresh time is replaced.
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(cache.get_or_fetch("b", None, fetch("tok-b", Some(past))).unwrap(), (token("tok-b"), 1));
        assert_eq!(cache.get_or_fetch("b", None, fetch("tok-b2", None)).unwrap(), (token("tok-b2"), 2));
        // A failed fetch keeps what was cached.
        assert_eq!(
            cache.get_or_fetch("a", Some(2), || Err::<(Zeroizing<String>, Option<Instant>), _>("down")),
            Err("down")
        );
        assert_eq!(cache.get_or_fetch("a", None, fetch("unused", None)).unwrap(), (token("tok-2"), 2));
        assert_eq!(cache.redact("tok-2 and tok-b2 and key-1", ["key-1"]), "<redacted> and <redacted> and <redacted>");
        cache.forget("a");
        assert_eq!(cache.get_or_fetch("a", None, fetch("tok-3", None)).unwrap(), (token("tok-3"), 1));
    }
}
