//! What grading a set of items would cost, before any judge is called: the committee's
//! calls rendered exactly as they would be sent, input tokens from the prompt text,
//! provider prefix caching modelled on OpenAI's rule, verdict-cache repeats removed, and
//! prices applied. Pure apart from rendering; never calls a provider.

use std::collections::HashSet;

use crate::cache::{KeyInputs, cache_key};
use crate::config::PromptMode;
use crate::item::{Item, RubricSource};
use crate::judge::call::{JudgeClient, cost_of};
use crate::judge::provider::response_format_text;
use crate::judge::{Expect, Usage};
use crate::rubric::Criterion;

use super::Committee;

/// Providers cache a prompt's leading part from this many tokens on ...
pub const CACHE_MIN_TOKENS: u64 = 1024;
/// ... in blocks of this many tokens (OpenAI's published prompt-caching rule).
pub const CACHE_BLOCK_TOKENS: u64 = 128;
/// Expected answer size of one criterion (a sentence or two of explanation plus the
/// verdict field); capped by the judge's `max_tokens`. Answers vary, so this is the
/// estimate's least certain part.
pub const OUTPUT_TOKENS_PER_CRITERION: u64 = 60;
/// Expected answer size of one verdict without an explanation (`committee.explanations
/// = false`): `{"criteria_met": true}` and the like, 6 to 9 tokens. A batched answer
/// also repeats each criterion's id.
pub const OUTPUT_TOKENS_PER_VERDICT: u64 = 8;
/// Characters per token, the same rule the outbound limiter budgets with.
const CHARS_PER_TOKEN: u64 = 4;
/// Tokens a chat request adds around its messages (role markers, separators).
const TOKENS_PER_MESSAGE: u64 = 4;

/// One judge's expected calls and bill.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct JudgeEstimate {
    pub judge: String,
    pub calls: u64,
    /// Calls left out because an earlier call in the set asks exactly the same thing
    /// (the verdict cache answers them).
    pub cache_hits: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// The judge's cached-input price is below its input price, so the provider is
    /// assumed to cache prompt prefixes (1,024 tokens, then 128-token blocks).
    pub prefix_cache: bool,
    /// The judge sends these calls through the provider's Batch API (job work with
    /// `batch = true`, or `tribunal grade --batch`): `cost_usd` includes its
    /// `batch_price_factor`.
    pub batch: bool,
}

/// The prefixes a provider has seen for one judge, as hashes of the prompt's leading
/// characters at each cacheable length.
#[derive(Default)]
struct PrefixModel {
    seen: HashSet<[u8; 32]>,
}

impl PrefixModel {
    /// Cached tokens of a prompt of `text`, remembering its prefixes.
    fn admit(&mut self, text: &str) -> u64 {
        let bytes = text.as_bytes();
        let tokens = (bytes.len() as u64).div_ceil(CHARS_PER_TOKEN);
        let mut cached = 0;
        let mut h = blake3::Hasher::new();
        let mut at = 0usize;
        let mut len = CACHE_MIN_TOKENS;
        while len <= tokens {
            let end = usize::try_from(len * CHARS_PER_TOKEN)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            h.update(&bytes[at..end]);
            at = end;
            // Every prompt inserts all its cacheable lengths, so a hit at `len` means
            // hits at every shorter one: the last hit is the cached part.
            if !self.seen.insert(*h.clone().finalize().as_bytes()) {
                cached = len;
            }
            len += CACHE_BLOCK_TOKENS;
        }
        cached
    }
}

impl Committee {
    /// The estimate's expected answer size per criterion: an explanation and the verdict,
    /// or the verdict alone (`committee.explanations = false`).
    pub fn output_tokens_per_criterion(&self) -> u64 {
        if self.templates.explains() {
            OUTPUT_TOKENS_PER_CRITERION
        } else {
            OUTPUT_TOKENS_PER_VERDICT
        }
    }

    /// Expected calls, tokens and cost per member judge for grading `items` once, in
    /// order, from an empty verdict cache. Items whose rubric is a store reference, and
    /// calls whose prompt does not render, are skipped (grading would fail them too).
    /// Escalations are not included: they depend on verdicts not yet given.
    pub fn estimate(&self, items: &[Item]) -> Vec<JudgeEstimate> {
        let mut out = Vec::with_capacity(self.members.len());
        for m in &self.members {
            out.push(self.estimate_judge(&m.client, items));
        }
        out
    }

    fn estimate_judge(&self, client: &JudgeClient, items: &[Item]) -> JudgeEstimate {
        let cfg = &client.cfg;
        let prefix_cache = cfg.price_cached_input_per_mtok < cfg.price_input_per_mtok;
        let mut est = JudgeEstimate {
            judge: cfg.name.clone(),
            prefix_cache,
            batch: client.batcher.is_some(),
            ..JudgeEstimate::default()
        };
        let mut keys = HashSet::new();
        let mut prefixes = PrefixModel::default();
        let mut usage = Usage::default();
        let per_answer = self.output_tokens_per_criterion();
        let structured = matches!(
            &cfg.provider,
            crate::config::ProviderConfig::OpenAi(o) if o.structured_output
        );
        let explain = self.templates.explains();
        for item in items {
            let (RubricSource::Inline(rubric), Some(response)) = (&item.rubric, &item.response)
            else {
                continue;
            };
            let nonce = self.templates.item_nonce(&item.case, response);
            let asks: Vec<Vec<&Criterion>> = match self.cfg.prompt_mode {
                PromptMode::PerCriterion => rubric.criteria.iter().map(|c| vec![c]).collect(),
                PromptMode::Batched => vec![rubric.criteria.iter().collect()],
            };
            for sample in 0..self.cfg.n_samples {
                for criteria in &asks {
                    let (template_hash, expect) = self.call_shape(criteria, false);
                    let one = matches!(expect, Expect::One(_));
                    let rendered = self.render(&expect, &item.case, response, criteria, &nonce);
                    let Ok(rendered) = rendered else { continue };
                    let key = cache_key(&KeyInputs {
                        judge: cfg,
                        template_hash,
                        case: &item.case,
                        response,
                        criteria,
                        sample,
                        reference: None,
                    });
                    if !keys.insert(key) {
                        est.cache_hits += 1;
                        continue;
                    }
                    est.calls += 1;
                    // A structured-output schema is part of the prompt a provider bills,
                    // ahead of the system message (OpenAI caches it as a prefix).
                    let schema = if structured {
                        response_format_text(&expect, explain) + "\n"
                    } else {
                        String::new()
                    };
                    let text = format!("{schema}{}\n{}", rendered.system, rendered.user);
                    let input =
                        (text.len() as u64).div_ceil(CHARS_PER_TOKEN) + 2 * TOKENS_PER_MESSAGE;
                    let cached = if prefix_cache {
                        prefixes.admit(&text).min(input)
                    } else {
                        0
                    };
                    // A batched verdict-only answer is mostly ids: count them.
                    let ids: u64 = if explain || one {
                        0
                    } else {
                        criteria
                            .iter()
                            .map(|c| (c.id.0.len() as u64).div_ceil(CHARS_PER_TOKEN) + 4)
                            .sum()
                    };
                    let answer = per_answer * criteria.len() as u64 + ids;
                    let output = cfg
                        .sampling
                        .max_tokens
                        .map_or(answer, |cap| answer.min(u64::from(cap)));
                    usage.add(Usage {
                        input_tokens: input,
                        output_tokens: output,
                        cached_input_tokens: cached,
                        reasoning_tokens: 0,
                    });
                }
            }
        }
        est.input_tokens = usage.input_tokens;
        est.cached_input_tokens = usage.cached_input_tokens;
        est.output_tokens = usage.output_tokens;
        est.cost_usd =
            cost_of(cfg, usage) * client.batcher.as_ref().map_or(1.0, |b| b.cfg.price_factor);
        est
    }
}
