//! Table-driven tests for config loading: TOML -> env overrides -> strict decode -> validate.
//!
//! `Config::load` reads API keys from the real process env, so tests never set process
//! env vars (they run in parallel); the key lookup is tested through `RawConfig::validate`
//! with an injected lookup instead.

use std::io::Write as _;
use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::{Config, ConfigError, ProviderConfig, RawConfig};
use crate::committee::vote::{Rule, TieRule};

/// The example configuration from the issue: three OpenAI-compatible judges.
const EXAMPLE: &str = r#"
[judges.a]
provider = "openai"
base_url = "http://127.0.0.1:8000/v1"
model = "gpt-4.1"
api_key_env = "OPENAI_API_KEY"
requests_per_minute = 600
max_concurrency = 32
timeout_ms = 30000

[judges.b]
provider = "openai"
base_url = "http://127.0.0.1:8000/v1"
model = "gpt-4.1"
api_key_env = "OPENAI_API_KEY"
requests_per_minute = 600
max_concurrency = 32
timeout_ms = 30000

[judges.c]
provider = "openai"
base_url = "http://127.0.0.1:8000/v1"
model = "gpt-4.1"
api_key_env = "OPENAI_API_KEY"
requests_per_minute = 600
max_concurrency = 32
timeout_ms = 30000

[committee]
members = ["a", "b", "c"]
consensus = "majority"
quorum = 2
"#;

/// One file with many independent problems; each must be reported.
const MANY_PROBLEMS: &str = r#"
[judges.a]
provider = "openai"
base_url = "http://127.0.0.1:8000/v1"
model = "gpt-4.1"
temperature = 3.0
requests_per_minute = 0

[judges.b]
provider = "openai"
base_url = "http://127.0.0.1:8000/v1"
model = "gpt-4.1"
timeout_ms = 60000

[judges.c]
provider = "sim"

[judges.s]
provider = "sim"
[judges.s.sim]
accuracy = 1.5

[judges.x]
provider = "bogus"

[committee]
members = ["b", "c", "ghost"]
quorum = 5
consensus = "bogus"
escalation = "b"
request_timeout_ms = 60000
"#;

/// Writes `text` to a temp file and loads it with the given override env.
fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.flush().unwrap();
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    Config::load(Some(file.path()), env)
}

fn load_ok(name: &str, text: Option<&str>, env: &[(&str, &str)]) -> Config {
    let res = match text {
        Some(t) => load_text(t, env),
        None => Config::load(None, env.iter().map(|(k, v)| ((*k).into(), (*v).into()))),
    };
    match res {
        Ok(cfg) => cfg,
        Err(e) => panic!("{name}: expected a valid config, got {:#?}", e.problems()),
    }
}

/// A problem "field: message" is present for every `(field, needle)`, with `needle`
/// somewhere in that problem.
fn assert_problems(name: &str, problems: &[String], expected: &[(&str, &str)]) {
    for (field, needle) in expected {
        let hit = problems.iter().any(|p| {
            (p.starts_with(&format!("{field}: ")) || (field.is_empty() && !p.is_empty()))
                && p.contains(needle)
        });
        assert!(
            hit,
            "{name}: no problem for `{field}` containing {needle:?}; got {problems:#?}"
        );
    }
}

fn openai(cfg: &Config, judge: &str) -> super::OpenAiConfig {
    match &cfg.judges[judge].provider {
        ProviderConfig::OpenAi(o) => o.clone(),
        ProviderConfig::Sim(_) => panic!("judge {judge} is simulated"),
    }
}

#[test]
fn example_config_loads_unchanged() {
    let cfg = load_ok("example", Some(EXAMPLE), &[]);
    assert_eq!(
        cfg.judges.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    for name in ["a", "b", "c"] {
        let j = &cfg.judges[name];
        assert_eq!(j.name, name);
        assert_eq!(j.model, "gpt-4.1", "{name}");
        assert!(!j.simulated(), "{name}");
        assert_eq!(j.limits.requests_per_minute, Some(600), "{name}");
        assert_eq!(j.limits.tokens_per_minute, None, "{name}");
        assert_eq!(j.limits.max_concurrency, 32, "{name}");
        assert_eq!(j.timeout, Duration::from_millis(30_000), "{name}");
        let o = openai(&cfg, name);
        assert_eq!(o.base_url, "http://127.0.0.1:8000/v1", "{name}");
        assert_eq!(o.api_key_env.as_deref(), Some("OPENAI_API_KEY"), "{name}");
    }
    let c = &cfg.committee;
    let members: Vec<_> = c.members.iter().map(|(n, w)| (n.as_str(), *w)).collect();
    assert_eq!(members, [("a", 1.0), ("b", 1.0), ("c", 1.0)]);
    assert_eq!(c.quorum, 2);
    assert_eq!(
        c.consensus,
        Rule::Majority {
            tie: TieRule::NotMet
        }
    );
    assert_eq!(c.escalation, None);
    assert_eq!(c.n_samples, 1);
    assert!(c.request_timeout > Duration::from_millis(30_000));
    assert!(!cfg.simulated());
}

#[test]
fn simulated_only_when_every_member_and_escalation_is_sim() {
    const ONE_OPENAI: &str = r#"
[judges.s1]
provider = "sim"
[judges.s2]
provider = "sim"
[judges.o]
provider = "openai"
base_url = "http://localhost:8000/v1"
model = "m"
[committee]
members = ["s1", "s2", "o"]
"#;
    const OPENAI_ESCALATION: &str = r#"
[judges.s1]
provider = "sim"
[judges.s2]
provider = "sim"
[judges.o]
provider = "openai"
base_url = "http://localhost:8000/v1"
model = "m"
[committee]
members = ["s1", "s2"]
escalation = "o"
"#;
    const OPENAI_UNUSED: &str = r#"
[judges.s1]
provider = "sim"
[judges.o]
provider = "openai"
base_url = "http://localhost:8000/v1"
model = "m"
[committee]
members = ["s1"]
"#;
    // (case, TOML or None for the built-in default, members, simulated)
    let cases: &[(&str, Option<&str>, usize, bool)] = &[
        ("default", None, 3, true),
        ("one openai member", Some(ONE_OPENAI), 3, false),
        ("openai escalation", Some(OPENAI_ESCALATION), 2, false),
        (
            "openai judge defined but unused",
            Some(OPENAI_UNUSED),
            1,
            true,
        ),
    ];
    for (name, text, members, simulated) in cases {
        let cfg = load_ok(name, *text, &[]);
        assert_eq!(cfg.committee.members.len(), *members, "{name}");
        assert_eq!(cfg.simulated(), *simulated, "{name}");
    }
}

#[test]
fn default_config_is_three_seeded_sims() {
    let cfg = Config::default_simulated().unwrap();
    assert!(cfg.simulated());
    let seeds: Vec<_> = cfg
        .committee
        .members
        .iter()
        .map(|(n, _)| match &cfg.judges[n].provider {
            ProviderConfig::Sim(s) => (n.as_str(), s.seed),
            ProviderConfig::OpenAi(_) => panic!("{n} is not simulated"),
        })
        .collect();
    assert_eq!(seeds, [("sim-a", 1), ("sim-b", 2), ("sim-c", 3)]);
    assert_eq!(cfg.committee.quorum, 2);
    assert_eq!(
        cfg.committee.consensus,
        Rule::Majority {
            tie: TieRule::NotMet
        }
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = load_text(MANY_PROBLEMS, &[]).unwrap_err();
    let problems = err.problems();
    let expected = [
        ("judges.x.provider", "bogus"),
        ("committee.quorum", "5"),
        ("committee.members[2]", "ghost"),
        ("judges.a.temperature", "3"),
        ("judges.a.requests_per_minute", "at least 1"),
        ("judges.s.sim.accuracy", "1.5"),
        ("committee.consensus", "bogus"),
        ("committee.escalation", "member"),
        ("committee.request_timeout_ms", "60000"),
    ];
    assert_problems("many problems", &problems, &expected);
    // Nothing else: each problem is reported once, with no knock-on noise.
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
}

#[test]
fn invalid_configs_name_the_offending_field() {
    const SIM_BASE_URL: &str = r#"
[judges.s]
provider = "sim"
base_url = "http://localhost:8000/v1"
[committee]
members = ["s"]
"#;
    const TYPO: &str = r#"
[judges.a]
provider = "sim"
modle = "x"
[committee]
members = ["a"]
"#;
    const OPENAI_BAD: &str = r#"
[judges.o]
provider = "openai"
base_url = "localhost:8000/v1"
[committee]
members = ["o"]
"#;
    const NO_COMMITTEE: &str = r#"
[judges.s]
provider = "sim"
"#;
    const TIE_ESCALATE_ALONE: &str = r#"
[judges.s]
provider = "sim"
[committee]
members = ["s"]
consensus_tie = "escalate"
"#;
    const DUPLICATE_MEMBER: &str = r#"
[judges.s]
provider = "sim"
[committee]
members = ["s", "s"]
quorum = 1
"#;
    // (case, TOML, override env, expected (field, needle) problems)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
    );
    let cases: &[Case] = &[
        (
            "sim with base_url",
            SIM_BASE_URL,
            &[],
            &[("judges.s.base_url", "sim")],
        ),
        (
            "unknown key",
            TYPO,
            &[],
            &[("judges.a.modle", "unknown field")],
        ),
        (
            "openai without scheme or model",
            OPENAI_BAD,
            &[],
            &[
                ("judges.o.base_url", "http://"),
                ("judges.o.model", "required"),
            ],
        ),
        (
            "no committee",
            NO_COMMITTEE,
            &[],
            &[("committee", "members")],
        ),
        (
            "no judges",
            "[committee]\nmembers = []\n",
            &[],
            &[
                ("judges", "at least one"),
                ("committee.members", "at least one"),
            ],
        ),
        (
            "tie escalate without escalation judge",
            TIE_ESCALATE_ALONE,
            &[],
            &[("committee.consensus_tie", "escalation")],
        ),
        (
            "duplicate member",
            DUPLICATE_MEMBER,
            &[],
            &[("committee.members[1]", "twice")],
        ),
        ("not TOML", "[judges", &[], &[("", "not valid TOML")]),
        (
            "override creates an unknown key",
            EXAMPLE,
            &[("TRIBUNAL__JUDGES__A__MODLE", "gpt-x")],
            &[("judges.a.modle", "unknown field")],
        ),
        (
            "override creates an unknown section",
            EXAMPLE,
            &[("TRIBUNAL__SERVERS__PORT", "80")],
            &[("", "unknown field `servers`")],
        ),
        (
            "override below a scalar",
            EXAMPLE,
            &[("TRIBUNAL__JUDGES__A__MODEL__NAME", "x")],
            &[("TRIBUNAL__JUDGES__A__MODEL__NAME", "not a table")],
        ),
        (
            "override with an empty segment",
            EXAMPLE,
            &[("TRIBUNAL__JUDGES____MODEL", "x")],
            &[("TRIBUNAL__JUDGES____MODEL", "empty path segment")],
        ),
        (
            "override with the wrong type",
            EXAMPLE,
            &[("TRIBUNAL__COMMITTEE__QUORUM", "two")],
            &[("committee.quorum", "string")],
        ),
        (
            "unknown consensus lists every rule",
            EXAMPLE,
            &[("TRIBUNAL__COMMITTEE__VETO_CONSENSUS", "plurality")],
            &[("committee.veto_consensus", "median, dawid_skene")],
        ),
        (
            "dawid_skene escalating without escalation judge",
            EXAMPLE,
            &[
                ("TRIBUNAL__COMMITTEE__CONSENSUS", "dawid_skene"),
                ("TRIBUNAL__COMMITTEE__CONSENSUS_TIE", "escalate"),
            ],
            &[("committee.consensus_tie", "escalation")],
        ),
    ];
    for (name, text, env, expected) in cases {
        match load_text(text, env) {
            Ok(_) => panic!("{name}: expected an error"),
            Err(e) => assert_problems(name, &e.problems(), expected),
        }
    }
}

#[test]
fn every_consensus_name_is_accepted() {
    for name in Rule::NAMES {
        let env = [
            ("TRIBUNAL__COMMITTEE__CONSENSUS", name),
            ("TRIBUNAL__COMMITTEE__CONSENSUS_TIE", "met"),
            ("TRIBUNAL__COMMITTEE__VETO_CONSENSUS", name),
        ];
        let cfg = load_ok(name, Some(EXAMPLE), &env);
        assert_eq!(cfg.committee.consensus.name(), name);
        assert_eq!(cfg.committee.veto_consensus.name(), name);
    }
    let env = [
        ("TRIBUNAL__COMMITTEE__CONSENSUS", "dawid_skene"),
        ("TRIBUNAL__COMMITTEE__CONSENSUS_TIE", "met"),
    ];
    let cfg = load_ok("dawid_skene", Some(EXAMPLE), &env);
    assert_eq!(
        cfg.committee.consensus,
        Rule::DawidSkene { tie: TieRule::Met }
    );
}

#[test]
fn env_overrides_apply_to_the_file() {
    // (case, env, judge a's model, quorum, judge a's requests_per_minute)
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        usize,
        Option<u32>,
    );
    let cases: &[Case] = &[
        ("no overrides", &[], "gpt-4.1", 2, Some(600)),
        (
            "model",
            &[("TRIBUNAL__JUDGES__A__MODEL", "gpt-x")],
            "gpt-x",
            2,
            Some(600),
        ),
        (
            "quorum is a TOML integer",
            &[("TRIBUNAL__COMMITTEE__QUORUM", "1")],
            "gpt-4.1",
            1,
            Some(600),
        ),
        (
            "quoted string value",
            &[("TRIBUNAL__JUDGES__A__MODEL", "\"4\"")],
            "4",
            2,
            Some(600),
        ),
        (
            "path is case-insensitive",
            &[("TRIBUNAL__Judges__A__Requests_Per_Minute", "60")],
            "gpt-4.1",
            2,
            Some(60),
        ),
        (
            "several at once",
            &[
                ("TRIBUNAL__JUDGES__A__MODEL", "gpt-y"),
                ("TRIBUNAL__COMMITTEE__QUORUM", "3"),
                ("TRIBUNAL__JUDGES__A__REQUESTS_PER_MINUTE", "1"),
            ],
            "gpt-y",
            3,
            Some(1),
        ),
        (
            "non-TRIBUNAL vars are ignored",
            &[
                ("PATH", "/usr/bin"),
                ("HOME", "/root"),
                ("TRIBUNAL_JUDGES__A__MODEL", "single-underscore"),
                ("tribunal__judges__a__model", "lower-case-prefix"),
                ("XTRIBUNAL__COMMITTEE__QUORUM", "1"),
            ],
            "gpt-4.1",
            2,
            Some(600),
        ),
    ];
    for (name, env, model, quorum, rpm) in cases {
        let cfg = load_ok(name, Some(EXAMPLE), env);
        let a = &cfg.judges["a"];
        assert_eq!(a.model, *model, "{name}");
        assert_eq!(cfg.committee.quorum, *quorum, "{name}");
        assert_eq!(a.limits.requests_per_minute, *rpm, "{name}");
        // Overrides never touch the other judges.
        assert_eq!(cfg.judges["b"].model, "gpt-4.1", "{name}");
    }
}

#[test]
fn api_key_is_read_from_the_named_env_var_and_masked() {
    const KEYED: &str = r#"
[judges.o]
provider = "openai"
base_url = "http://localhost:8000/v1/"
model = "m"
api_key_env = "MY_KEY"
[committee]
members = ["o"]
"#;
    const KEYLESS: &str = r#"
[judges.o]
provider = "openai"
base_url = "http://localhost:8000/v1"
model = "m"
[committee]
members = ["o"]
"#;
    let lookup = |name: &str| (name == "MY_KEY").then(|| "sk-test".to_owned());
    let no_env = |_: &str| None;
    // (case, TOML, env lookup, expected key)
    type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;
    let cases: &[(&str, &str, Lookup, Option<&str>)] = &[
        ("named var is set", KEYED, &lookup, Some("sk-test")),
        ("named var is missing", KEYED, &no_env, None),
        ("no api_key_env", KEYLESS, &lookup, None),
    ];
    for (name, text, env, key) in cases {
        let raw: RawConfig = toml::from_str(text).unwrap();
        let cfg = match raw.validate(env) {
            Ok(cfg) => cfg,
            Err(e) => panic!("{name}: {e}"),
        };
        let o = openai(&cfg, "o");
        assert_eq!(o.base_url, "http://localhost:8000/v1", "{name}");
        assert_eq!(
            o.api_key.as_ref().map(|k| k.expose_secret()),
            *key,
            "{name}"
        );
        let debug = format!("{o:?} {cfg:?}");
        assert!(!debug.contains("sk-test"), "{name}: key leaked in {debug}");
    }
}

#[test]
fn an_invalid_member_is_not_also_reported_as_undefined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(
        &path,
        "[judges.GPT]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\ntemperature = 3.0\n\n[committee]\nmembers = [\"GPT\"]\nquorum = 1\n",
    )
    .unwrap();
    let problems = Config::load(Some(&path), std::iter::empty())
        .unwrap_err()
        .problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("judges.GPT.temperature"),
        "{problems:?}"
    );
    // Upper-case judge names are reachable from env overrides.
    let env = vec![(
        "TRIBUNAL__JUDGES__GPT__TEMPERATURE".to_owned(),
        "0.5".to_owned(),
    )];
    let cfg = Config::load(Some(&path), env).unwrap();
    assert_eq!(cfg.judges["GPT"].sampling.temperature, Some(0.5));
}
