//! The simulated provider: a built-in judge for demos, load tests and fault drills.
//! Verdicts are a deterministic function of (seed, content key, sample): with a
//! reference label it agrees with probability `accuracy`, otherwise it draws from the
//! input hash. Faults (429 with Retry-After, 500, timeout, malformed JSON, refusal) are
//! injected at configured rates from a seeded stream over calls, so a retried call can
//! succeed. Every report graded by it says `simulated: true`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ChatRequest, Completion, Expect, Provider, ProviderError, Scale, Usage};
use crate::config::SimConfig;
use crate::rubric::{Credit, Severity, Verdict};

pub struct SimProvider {
    cfg: SimConfig,
    calls: AtomicU64,
}

/// A uniform draw in [0, 1) from a hash of the parts.
fn unit(parts: &[&[u8]]) -> f64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let b = h.finalize();
    let mut x = [0u8; 8];
    x.copy_from_slice(&b.as_bytes()[..8]);
    #[expect(
        clippy::cast_precision_loss,
        reason = "53 bits are enough for a uniform draw"
    )]
    let v = (u64::from_le_bytes(x) >> 11) as f64 / (1u64 << 53) as f64;
    v
}

/// The option a uniform draw `u` in [0, 1) selects. Callers pass the fixed, non-empty
/// verdict lists of a scale (or all but one of them).
fn pick(options: &[Verdict], u: f64) -> Verdict {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "index below len"
    )]
    let i = ((u * options.len() as f64) as usize).min(options.len() - 1);
    options[i]
}

impl SimProvider {
    pub fn new(cfg: SimConfig) -> Self {
        Self {
            cfg,
            calls: AtomicU64::new(0),
        }
    }

    fn verdict(
        &self,
        key: &[u8],
        sample: u32,
        scale: Scale,
        reference: Option<Verdict>,
    ) -> Verdict {
        let seed = self.cfg.seed.to_le_bytes();
        let s = sample.to_le_bytes();
        let u = unit(&[&seed, key, &s, b"verdict"]);
        let options: &[Verdict] = match scale {
            Scale::Binary => &[Verdict::Met(false), Verdict::Met(true)],
            Scale::Credit => &[
                Verdict::Credit(Credit::None),
                Verdict::Credit(Credit::Partial),
                Verdict::Credit(Credit::Full),
            ],
            Scale::Severity => &[
                Verdict::Severity(Severity::None),
                Verdict::Severity(Severity::Minor),
                Verdict::Severity(Severity::Major),
            ],
        };
        if let Some(r) = reference.filter(|r| options.contains(r)) {
            if u < self.cfg.accuracy {
                return r;
            }
            let others: Vec<Verdict> = options.iter().copied().filter(|o| *o != r).collect();
            return pick(&others, unit(&[&seed, key, &s, b"other"]));
        }
        // Without a label: "high" (met / full credit / major) with probability met_rate,
        // otherwise split evenly over the rest.
        let high = options[options.len() - 1];
        if u < self.cfg.met_rate {
            return high;
        }
        let v = (u - self.cfg.met_rate) / (1.0 - self.cfg.met_rate).max(f64::EPSILON);
        pick(&options[..options.len() - 1], v)
    }

    /// The answer a real judge would write: with an explanation unless the prompt asked
    /// for the verdict alone.
    fn answer_json(verdict: Verdict, explanation: Option<&str>) -> serde_json::Value {
        let (field, value) = match verdict {
            Verdict::Met(b) => ("criteria_met", serde_json::json!(b)),
            Verdict::Credit(_) => ("credit", verdict.to_json()),
            Verdict::Severity(_) => ("severity", verdict.to_json()),
        };
        let mut m = serde_json::Map::new();
        if let Some(e) = explanation {
            m.insert("explanation".into(), serde_json::json!(e));
        }
        m.insert(field.into(), value);
        serde_json::Value::Object(m)
    }
}

#[async_trait::async_trait]
impl Provider for SimProvider {
    async fn complete(&self, req: &ChatRequest) -> Result<Completion, ProviderError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let seed = self.cfg.seed.to_le_bytes();
        let lat = unit(&[&seed, &n.to_le_bytes(), b"latency"]);
        let jitter = self.cfg.latency_jitter_ms.min(self.cfg.latency_ms);
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "milliseconds"
        )]
        let ms = self.cfg.latency_ms - jitter + (lat * (2 * jitter + 1) as f64) as u64;
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let fault = unit(&[&seed, &n.to_le_bytes(), b"fault"]);
        let c = &self.cfg;
        let mut edge = c.rate_429;
        if fault < edge {
            return Err(ProviderError::RateLimited {
                retry_after: Some(Duration::from_millis(c.retry_after_ms)),
            });
        }
        edge += c.rate_500;
        if fault < edge {
            return Err(ProviderError::Server {
                status: 500,
                retry_after: None,
            });
        }
        edge += c.rate_timeout;
        if fault < edge {
            return Err(ProviderError::Timeout);
        }
        let input_chars: usize = req.messages.iter().map(|(_, t)| t.len()).sum();
        let usage = Some(Usage {
            input_tokens: (input_chars / 4) as u64,
            output_tokens: 30,
            ..Usage::default()
        });
        edge += c.rate_malformed;
        if fault < edge {
            return Ok(Completion {
                text: "I believe the response mostly meets this, criteria_met: probably".to_owned(),
                refusal: None,
                usage,
            });
        }
        edge += c.rate_refusal;
        if fault < edge {
            return Ok(Completion {
                text: String::new(),
                refusal: Some("I can't help with grading this content.".to_owned()),
                usage,
            });
        }
        let reference = |i: usize| {
            req.reference
                .as_ref()
                .and_then(|r| r.get(i).copied().flatten())
        };
        let explanation = req.explain.then_some("simulated verdict");
        let text = match &req.expect {
            Expect::One(scale) => {
                let v = self.verdict(&req.content_key, req.sample, *scale, reference(0));
                Self::answer_json(v, explanation).to_string()
            }
            Expect::Batch(items) => {
                let results: Vec<serde_json::Value> = items
                    .iter()
                    .enumerate()
                    .map(|(i, (id, scale))| {
                        let mut key = req.content_key.to_vec();
                        key.extend_from_slice(id.as_bytes());
                        let v = self.verdict(&key, req.sample, *scale, reference(i));
                        let mut o = Self::answer_json(v, explanation);
                        if let serde_json::Value::Object(m) = &mut o {
                            m.insert("id".into(), serde_json::json!(id));
                        }
                        o
                    })
                    .collect();
                serde_json::json!({ "results": results }).to_string()
            }
        };
        Ok(Completion {
            text,
            refusal: None,
            usage,
        })
    }

    fn simulated(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::ChatRole;

    fn req(key: u8, reference: Option<Verdict>) -> ChatRequest {
        ChatRequest {
            messages: vec![(ChatRole::User, "x".into())],
            expect: Expect::One(Scale::Binary),
            explain: true,
            content_key: [key; 32],
            sample: 0,
            reference: reference.map(|r| vec![Some(r)]),
        }
    }

    #[tokio::test]
    async fn deterministic_and_accurate_against_labels() {
        let a = SimProvider::new(SimConfig {
            accuracy: 0.8,
            ..SimConfig::default()
        });
        let b = SimProvider::new(SimConfig {
            accuracy: 0.8,
            ..SimConfig::default()
        });
        let mut agree = 0;
        for k in 0..=255u8 {
            let x = a.complete(&req(k, Some(Verdict::Met(true)))).await.unwrap();
            let y = b.complete(&req(k, Some(Verdict::Met(true)))).await.unwrap();
            assert_eq!(x.text, y.text);
            if x.text.contains("true") {
                agree += 1;
            }
        }
        // 256 draws at p = 0.8: mean 204.8, sd 6.4; 6 sd either side.
        assert!((166..=243).contains(&agree), "{agree}");
    }

    #[tokio::test]
    async fn injects_faults_at_rates() {
        let p = SimProvider::new(SimConfig {
            rate_429: 0.3,
            rate_500: 0.2,
            ..SimConfig::default()
        });
        let (mut r429, mut r500) = (0, 0);
        for k in 0..1000u32 {
            match p.complete(&req((k % 256) as u8, None)).await {
                Err(ProviderError::RateLimited { retry_after }) => {
                    assert_eq!(retry_after, Some(Duration::from_millis(1000)));
                    r429 += 1;
                }
                Err(ProviderError::Server { .. }) => r500 += 1,
                _ => {}
            }
        }
        assert!((240..=360).contains(&r429), "{r429}");
        assert!((150..=250).contains(&r500), "{r500}");
    }
}
