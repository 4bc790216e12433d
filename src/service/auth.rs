//! Who is calling, decided once for every transport. `Auth::authenticate` turns the
//! bearer token a transport extracted (HTTP `Authorization` header, gRPC
//! `authorization` metadata) into a `Caller` (key name and role) and spends one unit
//! of that key's request quota; `Caller::require` and `Caller::sees` hold the role
//! table and the ownership rule that every `Service` method applies. Must not know
//! about axum, tonic, headers or status codes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::ApiKeyConfig;
pub use crate::config::Role;
use crate::error::Error;
use crate::limits::{Admit, BucketStore, Limit, LocalBuckets, Take};

/// The identity every `Service` method receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The API key's configured name; `None` when the server runs without keys.
    pub key: Option<String>,
    pub role: Role,
}

/// What an operation does, for the role table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Grade,
    SubmitJob,
    /// Read, list, stream, summarise or cancel jobs (own jobs unless admin).
    UseJobs,
    ReadRubrics,
    WriteRubrics,
    ReadJudges,
    CreateCalibrationSet,
    ReadCalibration,
    AddLabels,
    StartCalibrationRun,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Action::Grade => "grade",
            Action::SubmitJob => "submit jobs",
            Action::UseJobs => "read or cancel jobs",
            Action::ReadRubrics => "read rubrics",
            Action::WriteRubrics => "store rubrics",
            Action::ReadJudges => "read the committee",
            Action::CreateCalibrationSet => "upload calibration sets",
            Action::ReadCalibration => "read calibration sets and runs",
            Action::AddLabels => "add labels",
            Action::StartCalibrationRun => "start calibration runs",
        }
    }
}

/// Owned resources, for the visibility rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    Job,
    /// Calibration sets and runs (a run is owned by the key that started it).
    Calibration,
}

impl Role {
    /// The role table (README "Security"). Exhaustive on purpose: a new action or role
    /// is a compile error here until someone decides who may do it.
    pub fn allows(self, action: Action) -> bool {
        match self {
            Role::Admin => true,
            Role::Client => match action {
                Action::Grade
                | Action::SubmitJob
                | Action::UseJobs
                | Action::ReadRubrics
                | Action::WriteRubrics
                | Action::ReadJudges
                | Action::CreateCalibrationSet
                | Action::ReadCalibration
                | Action::AddLabels
                | Action::StartCalibrationRun => true,
            },
            Role::Annotator => match action {
                // Labelling needs the sets, the runs' reports, the disagreements and
                // the criteria they were judged against.
                Action::ReadCalibration | Action::AddLabels | Action::ReadRubrics => true,
                Action::Grade
                | Action::SubmitJob
                | Action::UseJobs
                | Action::WriteRubrics
                | Action::ReadJudges
                | Action::CreateCalibrationSet
                | Action::StartCalibrationRun => false,
            },
        }
    }
}

impl Caller {
    /// The caller of a server without API keys: every caller is admin (such a server
    /// binds loopback only).
    pub fn local_admin() -> Caller {
        Caller {
            key: None,
            role: Role::Admin,
        }
    }

    /// What to record as the owner of something this caller creates.
    pub fn owner(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// `forbidden` unless the role may do `action`.
    pub fn require(&self, action: Action) -> Result<(), Error> {
        if self.role.allows(action) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "the {} role may not {}; use a key with another role",
                self.role.as_str(),
                action.describe()
            )))
        }
    }

    /// Whether a resource owned by `owner` exists for this caller. Admins see
    /// everything, annotators every calibration set and run, clients their own.
    pub fn sees(&self, what: Owned, owner: Option<&str>) -> bool {
        match (self.role, what) {
            (Role::Admin, _) | (Role::Annotator, Owned::Calibration) => true,
            (Role::Annotator, Owned::Job) => false,
            (Role::Client, _) => self.key.is_some() && owner == self.key.as_deref(),
        }
    }

    /// The owner filter for a list: `None` lists every owner's resources. An admin may
    /// narrow the list to one owner with `requested`.
    pub fn list_filter<'a>(&'a self, what: Owned, requested: Option<&'a str>) -> ListFilter<'a> {
        match (self.role, what) {
            (Role::Admin, _) | (Role::Annotator, Owned::Calibration) => match requested {
                Some(o) => ListFilter::Owner(o),
                None => ListFilter::All,
            },
            (Role::Annotator, Owned::Job) => ListFilter::Nothing,
            (Role::Client, _) => match &self.key {
                Some(k) => ListFilter::Owner(k),
                None => ListFilter::Nothing,
            },
        }
    }
}

/// Which owners' resources a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter<'a> {
    All,
    Owner(&'a str),
    Nothing,
}

impl ListFilter<'_> {
    pub fn admits(self, owner: Option<&str>) -> bool {
        match self {
            ListFilter::All => true,
            ListFilter::Owner(o) => owner == Some(o),
            ListFilter::Nothing => false,
        }
    }
}

struct Key {
    name: String,
    role: Role,
    digest: blake3::Hash,
    quota: Option<Limit>,
    max_concurrent_jobs: Option<usize>,
}

/// The configured API keys (by blake3 digest) and their quotas.
pub struct Auth {
    keys: Vec<Key>,
    /// Request quotas in this process, unless `share` moved them to a store every
    /// replica shares (Redis), so a key's budget is one across replicas as it is one
    /// across transports.
    local: LocalBuckets,
    shared: OnceLock<Arc<dyn BucketStore>>,
    /// Failed key guesses per client address.
    guesses: Guesses,
}

impl Auth {
    /// Keys whose digest does not parse are refused by config validation, so none is
    /// dropped here in practice; a malformed one could never match anyway.
    pub fn new(keys: &[ApiKeyConfig]) -> Auth {
        Auth {
            keys: keys
                .iter()
                .filter_map(|k| {
                    Some(Key {
                        name: k.name.clone(),
                        role: k.role,
                        digest: blake3::Hash::from_hex(&k.blake3).ok()?,
                        quota: k.requests_per_minute.filter(|r| *r > 0).map(quota),
                        max_concurrent_jobs: k.max_concurrent_jobs,
                    })
                })
                .collect(),
            local: LocalBuckets::new(),
            shared: OnceLock::new(),
            guesses: Guesses::default(),
        }
    }

    /// Unknown keys one client address may send before it is slowed down
    /// (`server.failed_keys_per_address`; 0 turns the slowdown off).
    #[must_use]
    pub fn with_failed_key_limit(mut self, free: u32) -> Auth {
        self.guesses.free = free;
        self
    }

    /// From now on the request quotas live in `store`, shared by every replica (set
    /// once, at start-up). Returns false if already shared.
    pub fn share(&self, store: Arc<dyn BucketStore>) -> bool {
        self.shared.set(store).is_ok()
    }

    /// Spends one request of `key`'s quota, or says how long until one is free.
    async fn spend(&self, key: &Key, quota: Limit) -> Result<(), Error> {
        let take = [Take {
            key: format!("key-{}:requests", key.name),
            limit: quota,
            cost: 1.0,
        }];
        let admit = match self.shared.get() {
            Some(s) => s.take(&take).await,
            None => self.local.take(&take).await,
        };
        match admit {
            Ok(Admit::Taken) => Ok(()),
            Ok(Admit::Wait(wait)) => {
                crate::metrics::quota_rejection(&key.name);
                Err(Error::RateLimited { retry_after: wait })
            }
            // A quota of at least one request always refills, and the shared store
            // falls back to local shares itself; this is a lock or script failure.
            Ok(Admit::Never) | Err(_) => {
                crate::metrics::quota_rejection(&key.name);
                Err(Error::RateLimited {
                    retry_after: Duration::from_secs(1),
                })
            }
        }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The caller presenting `authorization` (the raw `Bearer <key>` value, or
    /// nothing). Spends one request of the key's per-minute quota.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Error> {
        if self.keys.is_empty() {
            return Ok(Caller::local_admin());
        }
        let token = authorization
            .and_then(bearer_token)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "missing API key: send `authorization: Bearer <api key>`".into(),
                )
            })?;
        let digest = blake3::hash(token.as_bytes());
        // `blake3::Hash` equality is constant-time, and every key is compared, so the
        // time taken says nothing about which key (if any) matched.
        let key = self.keys.iter().fold(None, |found, k| {
            let hit = k.digest == digest;
            found.or(hit.then_some(k))
        });
        let key = key.ok_or_else(|| Error::Unauthenticated("unknown API key".into()))?;
        if let Some(q) = key.quota {
            self.spend(key, q).await?;
        }
        Ok(Caller {
            key: Some(key.name.clone()),
            role: key.role,
        })
    }

    /// `authenticate` for a caller at `peer` (the client's address, when the
    /// transport knows it): an address that sent too many unknown keys is refused
    /// with `rate_limited` for a while (`Guesses`), whatever key it sends.
    pub async fn authenticate_from(
        &self,
        authorization: Option<&str>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Caller, Error> {
        if self.keys.is_empty() {
            return Ok(Caller::local_admin());
        }
        // A request without a key guesses nothing: it gets its 401 even from a closed
        // address, so a client that forgot its key is told so.
        let presents_key = authorization
            .and_then(bearer_token)
            .is_some_and(|t| !t.trim().is_empty());
        if let (Some(addr), true) = (peer, presents_key) {
            self.guesses.check(addr)?;
        }
        let result = self.authenticate(authorization).await;
        if let (Some(addr), Err(Error::Unauthenticated(m))) = (peer, &result) {
            if m.starts_with("unknown API key") {
                self.guesses.failed(addr);
            }
        }
        result
    }

    /// Spends one request of the quota of the key `caller` authenticated with: for a
    /// surface that authenticates once and then serves many requests (a UI session),
    /// so each of them costs what the same request costs over the API.
    pub async fn spend_for(&self, caller: &Caller) -> Result<(), Error> {
        let Some(name) = caller.key.as_deref() else {
            return Ok(());
        };
        let key = self.keys.iter().find(|k| k.name == name).ok_or_else(|| {
            Error::Unauthenticated(format!("API key \"{name}\" is not configured"))
        })?;
        if let Some(q) = key.quota {
            self.spend(key, q).await?;
        }
        Ok(())
    }

    /// The concurrent-jobs quota of a caller (calibration runs are jobs too).
    pub fn max_concurrent_jobs(&self, caller: &Caller) -> Option<usize> {
        let name = caller.key.as_deref()?;
        self.keys
            .iter()
            .find(|k| k.name == name)?
            .max_concurrent_jobs
    }
}

/// The token of an `Authorization` value whose scheme is `Bearer`, in any case
/// (RFC 9110: auth schemes are case-insensitive).
fn bearer_token(header: &str) -> Option<&str> {
    let header = header.trim_start();
    let (scheme, rest) = header.split_at_checked(6)?;
    (scheme.eq_ignore_ascii_case("bearer") && rest.starts_with([' ', '\t'])).then_some(rest)
}

/// Loopback names every server answers to (with any port).
const LOOPBACK_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "::1"];

/// The host part of a `Host` header or `:authority` (lower-cased, port dropped).
fn host_part(authority: &str) -> String {
    let a = authority.trim();
    // userinfo is not allowed in Host, but `:authority` may carry it.
    let a = a.rsplit_once('@').map_or(a, |(_, h)| h);
    let host = if a.starts_with('[') {
        a.find(']').map_or(a, |end| &a[..=end])
    } else {
        a.split_once(':').map_or(a, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a request naming `host` (its `Host` header or gRPC `:authority`) is
/// served. A server without keys answers only to loopback names (`localhost`,
/// `127.x.y.z`, `[::1]`, any port) and `server.allowed_hosts`, so a page in the
/// user's browser cannot reach it through a DNS name it controls (DNS rebinding).
/// With keys the check applies once `allowed_hosts` is set. A request without a
/// host (HTTP/1.0) is served only where the check does not apply.
pub fn host_allowed(host: Option<&str>, keyless: bool, allowed: &[String]) -> Result<(), Error> {
    if !keyless && allowed.is_empty() {
        return Ok(());
    }
    let Some(raw) = host.filter(|h| !h.trim().is_empty()) else {
        return Err(Error::Forbidden(
            "the request names no host; send a Host header (server.allowed_hosts lists the names served)".into(),
        ));
    };
    let name = host_part(raw);
    let loopback = LOOPBACK_HOSTS.contains(&name.as_str())
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || allowed.contains(&name) {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "this server does not answer to the host \"{}\"; use localhost or 127.0.0.1, or add the name to server.allowed_hosts (README \"Security\")",
        crate::error::clip(&name, 100)
    )))
}

/// Failed key guesses, per client address: after `FREE_FAILURES` unknown keys in a
/// row from one address, each further one closes that address for twice as long as
/// the last (1 s, 2 s, 4 s ... up to `MAX_BLOCK`), and any key it sends meanwhile is
/// refused with `rate_limited` (checked before the key, so a right guess does not
/// get through either). Forgotten `FORGET_AFTER` after the last failure. Local to
/// this process.
pub struct Guesses {
    /// Unknown keys an address may send before it is slowed down (0: never).
    free: u32,
    by_addr: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Guessing>>,
}

#[derive(Debug, Clone, Copy)]
struct Guessing {
    failures: u32,
    last: std::time::Instant,
    blocked_until: Option<std::time::Instant>,
}

/// Unknown keys an address may send before it is slowed down, by default
/// (`server.failed_keys_per_address`; the default is config's).
pub use crate::config::DEFAULT_FAILED_KEYS_PER_ADDRESS as FREE_FAILURES;
const MAX_BLOCK: Duration = Duration::from_secs(60);
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most (the least recently failing is dropped).
const MAX_ADDRESSES: usize = 10_000;

impl Default for Guesses {
    fn default() -> Self {
        Guesses {
            free: FREE_FAILURES,
            by_addr: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl Guesses {
    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, Guessing>> {
        self.by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `rate_limited` while `addr` is closed after too many failures.
    pub fn check(&self, addr: std::net::IpAddr) -> Result<(), Error> {
        if self.free == 0 {
            return Ok(());
        }
        let now = std::time::Instant::now();
        match self.map().get(&addr).and_then(|g| g.blocked_until) {
            Some(until) if until > now => Err(Error::RateLimited {
                retry_after: until - now,
            }),
            _ => Ok(()),
        }
    }

    /// Records an unknown key from `addr`.
    pub fn failed(&self, addr: std::net::IpAddr) {
        if self.free == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let mut map = self.map();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&addr) {
            map.retain(|_, g| now.duration_since(g.last) < FORGET_AFTER);
            if map.len() >= MAX_ADDRESSES {
                if let Some(oldest) = map.iter().min_by_key(|(_, g)| g.last).map(|(a, _)| *a) {
                    map.remove(&oldest);
                }
            }
        }
        let g = map.entry(addr).or_insert(Guessing {
            failures: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(g.last) >= FORGET_AFTER {
            g.failures = 0;
        }
        g.failures = g.failures.saturating_add(1);
        g.last = now;
        if g.failures > self.free {
            let doublings = (g.failures - self.free - 1).min(6);
            let block = Duration::from_secs(1u64 << doublings).min(MAX_BLOCK);
            g.blocked_until = Some(now + block);
        }
    }
}

/// A key's request quota: `r` requests at once, refilled at `r` per minute. This is
/// the quota's documented meaning (a client may spend its minute's budget in a burst),
/// so unlike the judges' limits a window can hold up to `2r`; a bucket of capacity `r`
/// refilling `r` per window is `Limit`'s shape for a limit of `2r` with a burst of `r`.
fn quota(r: u32) -> Limit {
    Limit::per_minute(r.saturating_mul(2), f64::from(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, role: Role, secret: &str) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.into(),
            role,
            blake3: blake3::hash(secret.as_bytes()).to_hex().to_string(),
            requests_per_minute: None,
            max_concurrent_jobs: None,
        }
    }

    #[tokio::test]
    async fn keys_become_callers() {
        let auth = Auth::new(&[
            key("ci", Role::Client, "k1"),
            key("doc", Role::Annotator, "k2"),
        ]);
        for (header, expected) in [
            (Some("Bearer k1"), Ok(("ci", Role::Client))),
            (Some("Bearer  k2 "), Ok(("doc", Role::Annotator))),
            (Some("Bearer nope"), Err("unknown API key")),
            (Some("k1"), Err("missing API key")),
            (Some("Bearer "), Err("missing API key")),
            (None, Err("missing API key")),
        ] {
            let got = auth.authenticate(header).await;
            match expected {
                Ok((name, role)) => {
                    let c = got.unwrap();
                    assert_eq!((c.key.as_deref(), c.role), (Some(name), role), "{header:?}");
                }
                Err(m) => {
                    let e = got.unwrap_err();
                    assert_eq!(e.kind(), crate::ErrorKind::Unauthenticated, "{header:?}");
                    assert!(e.to_string().contains(m), "{header:?}: {e}");
                }
            }
        }
        // Without keys every caller is the local admin.
        assert_eq!(
            Auth::new(&[]).authenticate(None).await.unwrap(),
            Caller::local_admin()
        );
    }

    #[tokio::test]
    async fn bearer_is_case_insensitive() {
        let auth = Auth::new(&[key("ci", Role::Client, "k1")]);
        for header in ["Bearer k1", "bearer k1", "BEARER k1", "bEaReR\tk1"] {
            assert!(auth.authenticate(Some(header)).await.is_ok(), "{header}");
        }
        for header in ["Bearerk1", "Basic k1", "Bear k1"] {
            assert!(auth.authenticate(Some(header)).await.is_err(), "{header}");
        }
    }

    #[test]
    fn hosts_served() {
        let allowed = ["tribunal.example.org".to_owned()];
        for (host, keyless, list, ok) in [
            (Some("localhost:8080"), true, &[][..], true),
            (Some("LOCALHOST"), true, &[][..], true),
            (Some("127.0.0.1:1"), true, &[][..], true),
            (Some("127.9.9.9"), true, &[][..], true),
            (Some("[::1]:8080"), true, &[][..], true),
            (Some("localhost.:80"), true, &[][..], true),
            (Some("attacker.example:8080"), true, &[][..], false),
            (Some("127.0.0.1.nip.io"), true, &[][..], false),
            (Some("user@attacker.example"), true, &[][..], false),
            (None, true, &[][..], false),
            (Some("tribunal.example.org:443"), true, &allowed[..], true),
            (Some("attacker.example"), false, &[][..], true),
            (None, false, &[][..], true),
            (Some("attacker.example"), false, &allowed[..], false),
            (Some("localhost"), false, &allowed[..], true),
        ] {
            let got = host_allowed(host, keyless, list);
            assert_eq!(
                got.is_ok(),
                ok,
                "{host:?} keyless={keyless} {list:?}: {got:?}"
            );
            if let Err(e) = got {
                assert_eq!(e.kind(), crate::ErrorKind::Forbidden);
            }
        }
    }

    #[tokio::test]
    async fn failed_guesses_slow_an_address_down() {
        let auth = Auth::new(&[key("ci", Role::Client, "k1")]);
        let me: std::net::IpAddr = [10, 1, 2, 3].into();
        let other: std::net::IpAddr = [10, 1, 2, 4].into();
        for _ in 0..FREE_FAILURES {
            let e = auth
                .authenticate_from(Some("Bearer nope"), Some(me))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Unauthenticated);
        }
        assert!(
            auth.authenticate_from(Some("Bearer k1"), Some(me))
                .await
                .is_ok()
        );
        // One more failure closes the address, for the right key too.
        assert!(
            auth.authenticate_from(Some("Bearer nope"), Some(me))
                .await
                .is_err()
        );
        let e = auth
            .authenticate_from(Some("Bearer k1"), Some(me))
            .await
            .unwrap_err();
        match e {
            Error::RateLimited { retry_after } => {
                assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
        // A request without a key is told it lacks one, also from a closed address.
        let e = auth.authenticate_from(None, Some(me)).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unauthenticated);
        // Other addresses, and callers whose address is unknown, are not affected.
        assert!(
            auth.authenticate_from(Some("Bearer k1"), Some(other))
                .await
                .is_ok()
        );
        assert!(
            auth.authenticate_from(Some("Bearer k1"), None)
                .await
                .is_ok()
        );
        // A missing key is no guess.
        for _ in 0..20 {
            let _ = auth.authenticate_from(None, Some(other)).await;
        }
        assert!(
            auth.authenticate_from(Some("Bearer k1"), Some(other))
                .await
                .is_ok()
        );
        // A limit of 0 turns the slowdown off.
        let open = Auth::new(&[key("ci", Role::Client, "k1")]).with_failed_key_limit(0);
        for _ in 0..20 {
            let _ = open.authenticate_from(Some("Bearer nope"), Some(me)).await;
        }
        assert!(
            open.authenticate_from(Some("Bearer k1"), Some(me))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn request_quota_is_per_key() {
        let mut limited = key("ci", Role::Client, "k1");
        limited.requests_per_minute = Some(2);
        let auth = Auth::new(&[limited, key("other", Role::Client, "k2")]);
        assert!(auth.authenticate(Some("Bearer k1")).await.is_ok());
        assert!(auth.authenticate(Some("Bearer k1")).await.is_ok());
        let e = auth.authenticate(Some("Bearer k1")).await.unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::RateLimited);
        // The next request is free after a minute / 2 (30 s), not at once.
        match e {
            Error::RateLimited { retry_after } => assert!(
                retry_after > Duration::from_secs(29) && retry_after <= Duration::from_secs(30),
                "{retry_after:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(auth.authenticate(Some("Bearer k2")).await.is_ok());
    }

    #[test]
    fn role_table_and_visibility() {
        let client = Caller {
            key: Some("a".into()),
            role: Role::Client,
        };
        let annotator = Caller {
            key: Some("doc".into()),
            role: Role::Annotator,
        };
        let admin = Caller {
            key: Some("root".into()),
            role: Role::Admin,
        };
        assert!(client.require(Action::Grade).is_ok());
        let e = annotator.require(Action::Grade).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Forbidden);
        assert!(annotator.require(Action::AddLabels).is_ok());
        assert!(annotator.require(Action::WriteRubrics).is_err());
        assert!(annotator.require(Action::UseJobs).is_err());
        for (caller, what, owner, sees) in [
            (&client, Owned::Job, Some("a"), true),
            (&client, Owned::Job, Some("b"), false),
            (&client, Owned::Job, None, false),
            (&client, Owned::Calibration, Some("b"), false),
            (&annotator, Owned::Calibration, Some("b"), true),
            (&annotator, Owned::Job, Some("doc"), false),
            (&admin, Owned::Job, Some("b"), true),
            (&admin, Owned::Job, None, true),
        ] {
            assert_eq!(
                caller.sees(what, owner),
                sees,
                "{caller:?} {what:?} {owner:?}"
            );
        }
        assert_eq!(
            client.list_filter(Owned::Job, Some("b")),
            ListFilter::Owner("a")
        );
        assert_eq!(
            admin.list_filter(Owned::Job, Some("b")),
            ListFilter::Owner("b")
        );
        assert_eq!(admin.list_filter(Owned::Job, None), ListFilter::All);
        assert_eq!(annotator.list_filter(Owned::Job, None), ListFilter::Nothing);
    }
}
