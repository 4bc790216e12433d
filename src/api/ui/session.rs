//! UI sessions and CSRF tokens. A session is made at sign-in from the `Caller` the
//! service's own `authenticate` returned, and lives in memory (a restart signs every
//! user out; nothing about it is written to the store). Its token travels only in an
//! HttpOnly, SameSite=Strict cookie; each session has its own CSRF token, which every
//! form carries. Must not read or write the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngExt;

use crate::service::Caller;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tribunal_session";
/// The cookie holding the sign-in form's CSRF token (before a session exists).
pub const LOGIN_COOKIE: &str = "tribunal_login";
/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long a sign-in form stays valid.
pub const LOGIN_TTL: Duration = Duration::from_secs(1800);
/// Sessions kept at most; beyond it the oldest are dropped (memory bound).
const MAX_SESSIONS: usize = 10_000;
/// Sessions one API key holds at most: signing in again past it ends that key's
/// oldest session, so one key signing in over and over cannot push other users'
/// sessions out of the table.
pub const MAX_SESSIONS_PER_KEY: usize = 64;

#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    expires: Instant,
}

/// The live sessions, by token.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

/// 256 random bits as hex. `rand::rng()` is a CSPRNG seeded from the OS.
pub fn token() -> String {
    let mut rng = rand::rng();
    let (a, b): (u128, u128) = (rng.random(), rng.random());
    format!("{a:032x}{b:032x}")
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

impl Sessions {
    /// Starts a session for `caller`; returns its token.
    pub fn create(&self, caller: Caller) -> (String, Session) {
        let token = token();
        let session = Session {
            caller,
            csrf: self::token(),
            expires: Instant::now() + SESSION_TTL,
        };
        // A poisoned lock only means another request panicked mid-update; the map
        // itself is still a valid map, so keep serving.
        let mut map = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        let key = &session.caller.key;
        let mut own: Vec<(Instant, String)> = map
            .iter()
            .filter(|(_, s)| s.caller.key == *key)
            .map(|(t, s)| (s.expires, t.clone()))
            .collect();
        if own.len() >= MAX_SESSIONS_PER_KEY {
            own.sort_unstable();
            for (_, t) in own.iter().take(own.len() + 1 - MAX_SESSIONS_PER_KEY) {
                map.remove(t);
            }
        }
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(token.clone(), session.clone());
        (token, session)
    }

    /// The live session of `token`, if any.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut map = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(token) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    /// Whether `token` is still signed in (not signed out, not expired).
    pub fn alive(&self, token: &str) -> bool {
        self.get(token).is_some()
    }

    pub fn remove(&self, token: &str) {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(token);
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value: scoped to `/ui`, never readable by scripts, never sent on
/// cross-site requests. `Secure` is left to the TLS-terminating proxy's deployment
/// (the server itself speaks plain HTTP, and a browser drops Secure cookies there).
pub fn set_cookie(name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        max_age.as_secs()
    )
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_sign_out() {
        let s = Sessions::default();
        let (t, sess) = s.create(Caller::local_admin());
        assert_eq!(t.len(), 64);
        assert_ne!(t, sess.csrf, "the CSRF token is not the session token");
        assert_eq!(s.get(&t).map(|x| x.csrf), Some(sess.csrf));
        s.remove(&t);
        assert!(s.get(&t).is_none());
        assert!(s.get("nope").is_none());
    }

    #[test]
    fn one_key_cannot_crowd_out_other_sessions() {
        let s = Sessions::default();
        let key = |k: &str| Caller {
            key: Some(k.into()),
            role: crate::service::Role::Client,
        };
        let (other, _) = s.create(key("nurse"));
        let (first, _) = s.create(key("bot"));
        let mut last = String::new();
        for _ in 0..(MAX_SESSIONS_PER_KEY * 3) {
            last = s.create(key("bot")).0;
        }
        assert!(s.get(&other).is_some(), "another key's session survives");
        assert!(s.get(&first).is_none(), "the key's oldest session ended");
        assert!(s.get(&last).is_some());
        let bots = s
            .inner
            .lock()
            .unwrap()
            .values()
            .filter(|x| x.caller.key.as_deref() == Some("bot"))
            .count();
        assert_eq!(bots, MAX_SESSIONS_PER_KEY);
    }

    #[test]
    fn cookies_parse_and_are_http_only() {
        assert_eq!(
            cookie("a=1; tribunal_session=xyz", SESSION_COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie("tribunal_sessionx=1", SESSION_COOKIE), None);
        let c = set_cookie(SESSION_COOKIE, "v", SESSION_TTL);
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Max-Age=28800")
        );
        assert!(same_token("abc", "abc") && !same_token("abc", "abd"));
    }
}
