//! Verdict cache: moka (bounded by bytes, with TTL) in front of an optional persistent
//! second tier. Owns cache-key construction. Concurrent identical lookups coalesce into
//! one provider call (moka's `or_try_insert_with` is single-flight). Abstentions and
//! errors are never cached: the init future returns `Err` and nothing is stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{CacheConfig, Sampling};
use crate::item::{Case, Message};
#[cfg(test)]
use crate::judge::AbstainReason;
use crate::judge::{Parsed, Usage};
use crate::rubric::{Criterion, CriterionKind, Verdict};

pub type CacheKey = [u8; 32];

/// What a successful judge call produced, as cached and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// One per criterion asked (one for per-criterion prompts).
    pub answers: Vec<Parsed>,
    pub usage: Usage,
    pub template_hash: String,
}

impl CachedAnswer {
    /// The persisted form (second tier). Versioned by the `v` key.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "v": 1,
            "answers": self.answers.iter().map(|a| serde_json::json!({
                "verdict": a.verdict.to_json(),
                "explanation": a.explanation,
            })).collect::<Vec<_>>(),
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "template_hash": self.template_hash,
        })
        .to_string()
    }

    /// Reads the persisted form; `None` for anything unreadable (treated as a miss).
    pub fn from_json(text: &str) -> Option<CachedAnswer> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        if v.get("v")?.as_u64()? != 1 {
            return None;
        }
        let answers = v
            .get("answers")?
            .as_array()?
            .iter()
            .map(|a| {
                Some(Parsed {
                    verdict: Verdict::from_json(a.get("verdict")?).ok()?,
                    explanation: a.get("explanation")?.as_str()?.to_owned(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(CachedAnswer {
            answers,
            usage: Usage {
                input_tokens: v.get("input_tokens")?.as_u64()?,
                output_tokens: v.get("output_tokens")?.as_u64()?,
            },
            template_hash: v.get("template_hash")?.as_str()?.to_owned(),
        })
    }

    /// Approximate resident bytes of one cache entry, so `max_bytes` bounds real
    /// memory: the value and its heap parts, the key, and moka's per-entry bookkeeping
    /// (hash-map slot, access-order and expiry deque nodes, entry info), measured at
    /// about 300 bytes.
    fn weight(&self) -> u32 {
        const ENTRY_OVERHEAD: usize = 300;
        let answers: usize = self
            .answers
            .iter()
            .map(|a| std::mem::size_of::<Parsed>() + a.explanation.capacity())
            .sum();
        let total = ENTRY_OVERHEAD
            + std::mem::size_of::<CacheKey>()
            + std::mem::size_of::<CachedAnswer>()
            + answers
            + self.template_hash.capacity();
        u32::try_from(total).unwrap_or(u32::MAX)
    }
}

/// A persistent tier under the in-memory cache (the store implements it), so a restart
/// never pays twice for the same judge call.
#[async_trait::async_trait]
pub trait SecondTier: Send + Sync {
    async fn get(&self, key: &CacheKey) -> Option<CachedAnswer>;
    async fn put(&self, key: &CacheKey, value: &CachedAnswer);
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Memory,
    Persistent,
    Upstream,
}

#[derive(Debug, Default)]
pub struct CacheStats {
    pub memory_hits: AtomicU64,
    pub persistent_hits: AtomicU64,
    pub misses: AtomicU64,
}

pub struct VerdictCache {
    mem: moka::future::Cache<CacheKey, Arc<CachedAnswer>>,
    second: Option<Arc<dyn SecondTier>>,
    pub stats: CacheStats,
}

impl VerdictCache {
    pub fn new(cfg: &CacheConfig, second: Option<Arc<dyn SecondTier>>) -> Self {
        let mem = moka::future::Cache::builder()
            .max_capacity(cfg.max_bytes)
            .weigher(|_k: &CacheKey, v: &Arc<CachedAnswer>| v.weight())
            .time_to_live(cfg.ttl)
            .build();
        Self {
            mem,
            second,
            stats: CacheStats::default(),
        }
    }

    /// Returns the cached answer, or runs `call` once for all concurrent callers of the
    /// same key. An `Err` from `call` (an abstention, or a partly failed batch) reaches
    /// every waiting caller and is not stored.
    pub async fn get_or_call<F, E>(
        &self,
        key: CacheKey,
        call: F,
    ) -> (Result<Arc<CachedAnswer>, Arc<E>>, Source)
    where
        F: Future<Output = Result<CachedAnswer, E>>,
        E: Send + Sync + 'static,
    {
        // Memory first, then the persistent tier, both outside the single-flight
        // section: no storage IO runs inside moka's init future, so a slow store can
        // never hold a key's waiters (or a pool connection) while another waits.
        if let Some(hit) = self.mem.get(&key).await {
            crate::metrics::cache_lookup("memory", "hit");
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return (Ok(hit), Source::Memory);
        }
        crate::metrics::cache_lookup("memory", "miss");
        if let Some(second) = &self.second {
            if let Some(hit) = second.get(&key).await {
                crate::metrics::cache_lookup("persistent", "hit");
                self.stats.persistent_hits.fetch_add(1, Ordering::Relaxed);
                let hit = Arc::new(hit);
                self.mem.insert(key, Arc::clone(&hit)).await;
                return (Ok(hit), Source::Persistent);
            }
            crate::metrics::cache_lookup("persistent", "miss");
        }
        let init = async { call.await.map(Arc::new) };
        match self.mem.entry(key).or_try_insert_with(init).await {
            Ok(e) if !e.is_fresh() => {
                // Coalesced with a concurrent identical call.
                self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
                (Ok(e.into_value()), Source::Memory)
            }
            Ok(e) => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                let value = e.into_value();
                if let Some(second) = &self.second {
                    second.put(&key, &value).await;
                }
                (Ok(value), Source::Upstream)
            }
            Err(failure) => {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
                (Err(failure), Source::Upstream)
            }
        }
    }

    pub fn entry_count(&self) -> u64 {
        self.mem.entry_count()
    }
}

/// Everything that determines a judge's answer. Built by destructuring, so a new field
/// in any of these types is a compile error here until it is either hashed or
/// explicitly declared irrelevant.
pub struct KeyInputs<'a> {
    /// Provider identity: kind, endpoint, model (and simulator settings).
    pub judge_fingerprint: &'a str,
    pub sampling: &'a Sampling,
    pub template_hash: &'a str,
    pub case: &'a Case,
    pub response: &'a str,
    pub criteria: &'a [&'a Criterion],
    pub sample: u32,
    /// Calibration labels (only the simulated provider reads them).
    pub reference: Option<&'a [Option<Verdict>]>,
}

/// blake3 over the destructured inputs with a field separator after each part.
pub fn cache_key(k: &KeyInputs<'_>) -> CacheKey {
    let KeyInputs {
        judge_fingerprint,
        sampling,
        template_hash,
        case,
        response,
        criteria,
        sample,
        reference,
    } = k;
    let Sampling {
        temperature,
        top_p,
        max_tokens,
        seed,
    } = sampling;
    // The case id, tags and reference answers never reach the prompt.
    let Case {
        id: _,
        conversation,
        tags: _,
        reference_responses: _,
    } = case;
    let mut h = blake3::Hasher::new();
    let mut part = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
        h.update(b"\x1e");
    };
    part(b"tribunal.cache.v1");
    part(judge_fingerprint.as_bytes());
    part(format!("{temperature:?}|{top_p:?}|{max_tokens:?}|{seed:?}").as_bytes());
    part(template_hash.as_bytes());
    part(&(conversation.len() as u64).to_le_bytes());
    for Message { role, content } in conversation {
        part(role.as_str().as_bytes());
        part(content.as_bytes());
    }
    part(response.as_bytes());
    part(&(criteria.len() as u64).to_le_bytes());
    for c in criteria.iter() {
        let Criterion {
            id,
            text,
            kind,
            tags: _,
            veto: _,
            weight: _,
        } = c;
        part(id.0.as_bytes());
        part(text.as_bytes());
        let kind = match kind {
            CriterionKind::Points(p) => format!("points:{p}"),
            CriterionKind::Tier(t) => format!("tier:{}", t.as_str()),
        };
        part(kind.as_bytes());
    }
    part(&sample.to_le_bytes());
    match reference {
        None => part(b"no-reference"),
        Some(r) => part(format!("{r:?}").as_bytes()),
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::Role;
    use crate::rubric::CriterionId;

    fn case() -> Case {
        Case {
            id: "a".into(),
            conversation: vec![Message {
                role: Role::User,
                content: "hi".into(),
            }],
            tags: vec![],
            reference_responses: vec![],
        }
    }

    fn crit(text: &str) -> Criterion {
        Criterion {
            id: CriterionId("c".into()),
            text: text.into(),
            kind: CriterionKind::Points(5),
            tags: vec![],
            veto: false,
            weight: None,
        }
    }

    #[test]
    fn key_covers_every_input_that_reaches_the_prompt() {
        let s = Sampling {
            temperature: Some(0.0),
            top_p: None,
            max_tokens: None,
            seed: None,
        };
        let c = crit("x");
        let cs = [&c];
        let base = KeyInputs {
            judge_fingerprint: "openai|m",
            sampling: &s,
            template_hash: "t",
            case: &case(),
            response: "r",
            criteria: &cs,
            sample: 0,
            reference: None,
        };
        let k0 = cache_key(&base);
        let mut other_case = case();
        other_case.id = "different id, same prompt".into();
        assert_eq!(
            k0,
            cache_key(&KeyInputs {
                case: &other_case,
                ..base
            })
        );
        let s2 = Sampling {
            temperature: Some(0.7),
            ..s.clone()
        };
        let c2 = crit("y");
        let cs2 = [&c2];
        let mut case3 = case();
        case3.conversation[0].content = "ho".into();
        for changed in [
            KeyInputs {
                judge_fingerprint: "openai|n",
                ..base
            },
            KeyInputs {
                sampling: &s2,
                ..base
            },
            KeyInputs {
                template_hash: "u",
                ..base
            },
            KeyInputs {
                case: &case3,
                ..base
            },
            KeyInputs {
                response: "r2",
                ..base
            },
            KeyInputs {
                criteria: &cs2,
                ..base
            },
            KeyInputs { sample: 1, ..base },
        ] {
            assert_ne!(k0, cache_key(&changed));
        }
    }

    #[tokio::test]
    async fn abstentions_are_not_cached_and_calls_coalesce() {
        let cache = Arc::new(VerdictCache::new(
            &CacheConfig {
                max_bytes: 1 << 20,
                ttl: std::time::Duration::from_secs(60),
            },
            None,
        ));
        let calls = Arc::new(AtomicU64::new(0));
        let (r, src) = cache
            .get_or_call([1; 32], async { Err(AbstainReason::Timeout) })
            .await;
        assert_eq!(
            (r.err().map(|e| *e), src),
            (Some(AbstainReason::Timeout), Source::Upstream)
        );
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let cache = Arc::clone(&cache);
            let calls = Arc::clone(&calls);
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_call::<_, AbstainReason>([1; 32], async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        Ok(CachedAnswer {
                            answers: vec![],
                            usage: Usage::default(),
                            template_hash: "t".into(),
                        })
                    })
                    .await
                    .1
            }));
        }
        let mut upstream = 0;
        for t in tasks {
            if t.await.unwrap() == Source::Upstream {
                upstream += 1;
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "single flight");
        assert_eq!(upstream, 1);
    }
}
