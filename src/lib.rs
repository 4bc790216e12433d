//! tribunal grades LLM responses against rubrics with a committee of LLM judges.
//!
//! Module map (see README "Architecture" for invariants):
//! - [`rubric`]: rubric model, verdict scales, `rubric.v1` schema and validation (pure).
//! - [`item`]: graded items; reads HealthBench rows and `case.v1` rows (pure).
//! - [`score`]: scoring policies, vetoes, abstentions, batch statistics (pure).
//! - [`judge`]: judge trait, prompts, answer parsing, providers.
//! - [`committee`]: fan-out, quorum, consensus.
//! - [`calibration`]: calibration sets and judge-human agreement (pure `set` and
//!   `agreement`), and the live-run side that uses them (`live`, `run`).
//! - [`redis`]: the Redis connection and what replicas share through it (buckets, cache tier).
//! - [`config`]: `RawConfig` -> validated `Config` from text handed in (pure, no files).
//! - [`jobs`]: durable batch-job runners, with an on-finish hook.
//! - [`app`]: builds everything from a `Config`, loads it from disk, wires the hooks.
//! - [`cli`]: the command line, one file per command.
//! - [`error`]: the crate error vocabulary.
//! - [`names`]: the one rule for names (sets, rubrics): NFC, trimmed, bounded, no control characters (pure).

pub mod api;
pub mod app;
pub mod cache;
pub mod calibration;
pub mod cli;
pub mod committee;
pub mod config;
pub mod error;
pub mod grader;
pub mod item;
pub mod jobs;
pub mod judge;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod redis;
pub mod rubric;
pub mod score;
pub mod service;
pub mod store;
pub mod telemetry;

pub use error::{Error, ErrorKind, Result};
