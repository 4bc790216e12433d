//! Table-driven tests for config loading: TOML -> env overrides -> strict decode -> validate.
//!
//! Callers pass the real process env (`std::env::vars()`), so tests never set process
//! env vars (they run in parallel); the key lookup is tested through `RawConfig::validate`
//! with an injected lookup instead. Config reads no files: tests hand it TOML text.

use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::{Config, ConfigError, LoadedFiles, ProviderConfig, RawConfig};
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

/// Parses and validates `text` (naming no files) with the given override env.
fn parse(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    Config::parse(text, env)?.validate(LoadedFiles::default())
}

/// Parses and validates `text` with the given override env.
fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    parse(text, env)
}

fn load_ok(name: &str, text: Option<&str>, env: &[(&str, &str)]) -> Config {
    let res = match text {
        Some(t) => load_text(t, env),
        None => load_text(super::DEFAULT_CONFIG, env),
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
        let cfg = match raw.validate(env, LoadedFiles::default()) {
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
    let text = "[judges.GPT]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\ntemperature = 3.0\n\n[committee]\nmembers = [\"GPT\"]\nquorum = 1\n";
    let problems = parse(text, std::iter::empty()).unwrap_err().problems();
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
    let cfg = parse(text, env).unwrap();
    assert_eq!(cfg.judges["GPT"].sampling.temperature, Some(0.5));
}

/// The files a config names are the caller's to read: config reports their paths (after
/// env overrides), takes their interpreted values, and reports their problems at the
/// field that names them, beside every other problem.
#[test]
fn named_files_are_handed_in_already_interpreted() {
    let text = format!(
        "{}reliability = \"rel.json\"\nweights_from = \"w.json\"\n",
        super::DEFAULT_CONFIG
    );
    let parsed = Config::parse(&text, std::iter::empty()).unwrap();
    let named = parsed.files();
    assert_eq!(named.reliability, Some(std::path::Path::new("rel.json")));
    assert_eq!(named.weights_from, Some(std::path::Path::new("w.json")));
    let env = [(
        "TRIBUNAL__COMMITTEE__WEIGHTS_FROM".to_owned(),
        "\"other.json\"".to_owned(),
    )];
    let overridden = Config::parse(&text, env).unwrap();
    assert_eq!(
        overridden.files().weights_from,
        Some(std::path::Path::new("other.json"))
    );
    assert_eq!(
        Config::parse(super::DEFAULT_CONFIG, std::iter::empty())
            .unwrap()
            .files(),
        super::NamedFiles::default()
    );

    // Problems keep the caller's sentence, at the naming field.
    let problems = parsed
        .validate(LoadedFiles {
            reliability: Some(Err("cannot read rel.json: gone".into())),
            weights_from: Some(Err("w.json: no suggested_weights found".into())),
        })
        .unwrap_err()
        .problems();
    assert_problems(
        "bad files",
        &problems,
        &[
            ("committee.reliability", "cannot read rel.json: gone"),
            (
                "committee.weights_from",
                "only used by the weighted consensus",
            ),
            (
                "committee.weights_from",
                "w.json: no suggested_weights found",
            ),
        ],
    );

    // A named file that was not handed in is a problem, never silently ignored.
    let problems = Config::parse(&text, std::iter::empty())
        .unwrap()
        .validate(LoadedFiles::default())
        .unwrap_err()
        .problems();
    assert_problems(
        "not read",
        &problems,
        &[
            ("committee.reliability", "rel.json: the file was not read"),
            ("committee.weights_from", "w.json: the file was not read"),
        ],
    );

    // Weights from the file replace the members' weights, by judge name.
    let weighted = text.replace("consensus = \"majority\"", "consensus = \"weighted\"");
    let weights = [("sim-a".to_owned(), 2.5), ("nobody".to_owned(), 9.0)];
    let cfg = Config::parse(&weighted, std::iter::empty())
        .unwrap()
        .validate(LoadedFiles {
            reliability: Some(Err("unused".into())),
            weights_from: Some(Ok(weights.into_iter().collect())),
        });
    let problems = cfg.unwrap_err().problems();
    assert_eq!(problems, ["committee.reliability: unused"], "{problems:?}");
    let cfg = Config::parse(&weighted.replace("reliability = \"rel.json\"\n", ""), [])
        .unwrap()
        .validate(LoadedFiles {
            reliability: None,
            weights_from: Some(Ok([("sim-a".to_owned(), 2.5)].into_iter().collect())),
        })
        .unwrap();
    assert_eq!(
        cfg.committee.members,
        [
            ("sim-a".to_owned(), 2.5),
            ("sim-b".to_owned(), 1.0),
            ("sim-c".to_owned(), 1.0)
        ]
    );
}

#[test]
fn telemetry_is_off_by_default_and_the_endpoint_gets_the_traces_path() {
    // (case, extra TOML, env, expected endpoint, expected service name)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        &'a str,
    );
    let cases: &[Case] = &[
        ("absent: off", "", &[], None, "tribunal"),
        ("empty section: off", "[telemetry]\n", &[], None, "tribunal"),
        (
            "empty endpoint: off",
            "[telemetry]\notlp_endpoint = \"\"\n",
            &[],
            None,
            "tribunal",
        ),
        (
            "base URL gets /v1/traces",
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/\"\n",
            &[],
            Some("http://127.0.0.1:4318/v1/traces"),
            "tribunal",
        ),
        (
            "full traces URL is kept",
            "[telemetry]\notlp_endpoint = \"https://otel.example:4318/v1/traces\"\nservice_name = \"grader-eu\"\n",
            &[],
            Some("https://otel.example:4318/v1/traces"),
            "grader-eu",
        ),
        (
            "env override",
            "",
            &[(
                "TRIBUNAL__TELEMETRY__OTLP_ENDPOINT",
                "http://collector:4318",
            )],
            Some("http://collector:4318/v1/traces"),
            "tribunal",
        ),
    ];
    for (name, extra, env, endpoint, service) in cases {
        let text = format!("{}\n{extra}", super::DEFAULT_CONFIG);
        let cfg = load_ok(name, Some(&text), env);
        assert_eq!(cfg.telemetry.otlp_endpoint.as_deref(), *endpoint, "{name}");
        assert_eq!(cfg.telemetry.service_name, *service, "{name}");
    }
}

#[test]
fn invalid_telemetry_names_the_field() {
    // (case, [telemetry] body, expected (field, needle) problems)
    let cases: &[(&str, &str, &[(&str, &str)])] = &[
        (
            "grpc scheme",
            "otlp_endpoint = \"grpc://127.0.0.1:4317\"",
            &[("telemetry.otlp_endpoint", "grpc://127.0.0.1:4317")],
        ),
        (
            "bare host",
            "otlp_endpoint = \"collector:4318\"",
            &[("telemetry.otlp_endpoint", "http://")],
        ),
        (
            "blank service name",
            "service_name = \" \"",
            &[("telemetry.service_name", "empty")],
        ),
        (
            "unknown key",
            "otlp_endpiont = \"x\"",
            &[("", "otlp_endpiont")],
        ),
    ];
    for (name, body, expected) in cases {
        let text = format!("{}\n[telemetry]\n{body}\n", super::DEFAULT_CONFIG);
        let err = load_text(&text, &[]).unwrap_err();
        let problems = err.problems();
        assert_problems(name, &problems, expected);
        assert_eq!(problems.len(), expected.len(), "{name}: {problems:#?}");
    }
}

#[test]
fn database_url_selects_the_store_and_its_password_is_masked() {
    use super::DatabaseKind;
    for (url, kind) in [
        ("sqlite://tribunal.db", Some(DatabaseKind::Sqlite)),
        ("sqlite::memory:", Some(DatabaseKind::Sqlite)),
        ("postgres://u:p@db:5432/t", Some(DatabaseKind::Postgres)),
        ("postgresql://db/t", Some(DatabaseKind::Postgres)),
        ("mysql://db/t", None),
        ("tribunal.db", None),
    ] {
        assert_eq!(DatabaseKind::of(url), kind, "{url}");
    }
    let cfg = load_ok(
        "postgres",
        None,
        &[
            (
                "TRIBUNAL__SERVER__DATABASE_URL",
                "postgres://tribunal:s3cret@db:5432/t",
            ),
            ("TRIBUNAL__SERVER__JOB_LEASE_SECONDS", "5"),
        ],
    );
    assert_eq!(
        cfg.server.database_display(),
        "postgres://tribunal:***@db:5432/t"
    );
    assert_eq!(cfg.server.job_lease, Duration::from_secs(5));
    let default = load_ok("default", None, &[]);
    assert_eq!(default.server.database_display(), "sqlite://tribunal.db");
    assert_eq!(default.server.job_lease, Duration::from_secs(30));
    for (env, field, needle) in [
        (
            "TRIBUNAL__SERVER__DATABASE_URL",
            "server.database_url",
            "postgres://",
        ),
        (
            "TRIBUNAL__SERVER__JOB_LEASE_SECONDS",
            "server.job_lease_seconds",
            "at least 1",
        ),
    ] {
        let value = if env.ends_with("URL") {
            "mysql://db/t"
        } else {
            "0"
        };
        match load_text(super::DEFAULT_CONFIG, &[(env, value)]) {
            Ok(_) => panic!("{env}={value} was accepted"),
            Err(e) => assert_problems(env, &e.problems(), &[(field, needle)]),
        }
    }
}

#[test]
fn prompts_default_to_v3_and_name_the_field_when_wrong() {
    const BASE: &str = "[judges.s]\nprovider = \"sim\"\n[committee]\nmembers = [\"s\"]\n";
    let cfg = load_ok("default", Some(BASE), &[]);
    assert_eq!(
        cfg.committee.prompts,
        crate::judge::prompt::BuiltinPrompts::V3
    );
    let cfg = load_ok("v2", Some(BASE), &[("TRIBUNAL__COMMITTEE__PROMPTS", "v2")]);
    assert_eq!(
        cfg.committee.prompts,
        crate::judge::prompt::BuiltinPrompts::V2
    );
    let cfg = load_ok("v1", Some(BASE), &[("TRIBUNAL__COMMITTEE__PROMPTS", "v1")]);
    assert_eq!(
        cfg.committee.prompts,
        crate::judge::prompt::BuiltinPrompts::V1
    );
    let cases: [(&str, &[(&str, &str)], &str); 2] = [
        (
            "unknown set",
            &[("TRIBUNAL__COMMITTEE__PROMPTS", "v9")],
            "use v1, v2 or v3",
        ),
        (
            "both a set and a directory",
            &[
                ("TRIBUNAL__COMMITTEE__PROMPTS", "v1"),
                ("TRIBUNAL__COMMITTEE__PROMPTS_DIR", "/tmp/prompts"),
            ],
            "not both",
        ),
    ];
    for (name, env, needle) in cases {
        match load_text(BASE, env) {
            Ok(_) => panic!("{name}: expected an error"),
            Err(e) => assert_problems(name, &e.problems(), &[("committee.prompts", needle)]),
        }
    }
}

#[test]
fn explanations_default_on_and_off_needs_a_set_that_reads_explain() {
    const BASE: &str = "[judges.s]\nprovider = \"sim\"\n[committee]\nmembers = [\"s\"]\n";
    let off = [("TRIBUNAL__COMMITTEE__EXPLANATIONS", "false")];
    assert!(load_ok("default", Some(BASE), &[]).committee.explanations);
    assert!(!load_ok("v3", Some(BASE), &off).committee.explanations);
    let custom = [off[0], ("TRIBUNAL__COMMITTEE__PROMPTS_DIR", "/tmp/prompts")];
    assert!(
        !load_ok("custom", Some(BASE), &custom)
            .committee
            .explanations
    );
    for set in ["v1", "v2"] {
        match load_text(BASE, &[off[0], ("TRIBUNAL__COMMITTEE__PROMPTS", set)]) {
            Ok(_) => panic!("{set}: explanations = false was accepted"),
            Err(e) => assert_problems(
                set,
                &e.problems(),
                &[("committee.explanations", "set prompts = \"v3\"")],
            ),
        }
    }
}

#[test]
fn cached_input_price_defaults_to_the_input_price_and_must_be_non_negative() {
    const JUDGE: &str = "[judges.s]\nprovider = \"sim\"\nprice_input_per_mtok = 2.0\n[committee]\nmembers = [\"s\"]\n";
    let cfg = load_ok("default", Some(JUDGE), &[]);
    assert_eq!(cfg.judges["s"].price_cached_input_per_mtok, 2.0);
    let cfg = load_ok(
        "set",
        Some(JUDGE),
        &[("TRIBUNAL__JUDGES__S__PRICE_CACHED_INPUT_PER_MTOK", "0.5")],
    );
    assert_eq!(cfg.judges["s"].price_cached_input_per_mtok, 0.5);
    match load_text(
        JUDGE,
        &[("TRIBUNAL__JUDGES__S__PRICE_CACHED_INPUT_PER_MTOK", "-1")],
    ) {
        Ok(_) => panic!("a negative price must be rejected"),
        Err(e) => assert_problems(
            "negative",
            &e.problems(),
            &[("judges.s.price_cached_input_per_mtok", ">= 0")],
        ),
    }
}

#[test]
fn redis_section_is_optional_and_validated() {
    let base = super::DEFAULT_CONFIG;
    assert!(load_ok("no redis", None, &[]).redis.is_none());
    let cfg = load_ok(
        "redis defaults",
        Some(&format!(
            "{base}\n[redis]\nurl = \"redis://:pw@10.0.0.5:6380/2\"\n"
        )),
        &[],
    );
    let r = cfg.redis.unwrap();
    assert_eq!(r.url.expose_secret(), "redis://:pw@10.0.0.5:6380/2");
    assert_eq!(
        (r.replicas, r.key_prefix.as_str(), r.timeout, r.lease),
        (
            1,
            "tribunal",
            Duration::from_millis(500),
            Duration::from_secs(5)
        )
    );
    // The password never reaches Debug output.
    assert!(!format!("{r:?}").contains("pw"));
    // Env overrides reach the section like any other.
    let cfg = load_ok(
        "redis from env",
        None,
        &[
            ("TRIBUNAL__REDIS__URL", "redis://127.0.0.1:6379"),
            ("TRIBUNAL__REDIS__REPLICAS", "3"),
        ],
    );
    assert_eq!(cfg.redis.map(|r| r.replicas), Some(3));
    for (name, section, expected) in [
        (
            "missing url",
            "[redis]\nreplicas = 2\n",
            ("redis.url", "missing"),
        ),
        (
            "wrong scheme",
            "[redis]\nurl = \"http://secret@host\"\n",
            ("redis.url", "must start with redis://"),
        ),
        (
            "no replicas",
            "[redis]\nurl = \"redis://h\"\nreplicas = 0\n",
            ("redis.replicas", "at least 1"),
        ),
        (
            "brace in prefix",
            "[redis]\nurl = \"redis://h\"\nkey_prefix = \"a{b}\"\n",
            ("redis.key_prefix", "braces"),
        ),
        (
            "short lease",
            "[redis]\nurl = \"redis://h\"\nlease_ms = 10\n",
            ("redis.lease_ms", "at least 30 ms"),
        ),
        (
            "unknown key",
            "[redis]\nurl = \"redis://h\"\nhost = \"h\"\n",
            ("redis.host", "unknown field"),
        ),
    ] {
        let problems = load_text(&format!("{base}\n{section}"), &[])
            .map(|_| panic!("{name}: accepted"))
            .unwrap_err()
            .problems();
        assert_problems(name, &problems, &[expected]);
        // A URL's secret part is never echoed back.
        assert!(
            problems.iter().all(|p| !p.contains("secret")),
            "{name}: {problems:?}"
        );
    }
}

#[test]
fn batch_options_have_defaults_and_errors_name_the_field() {
    const JUDGE: &str = "[judges.o]\nprovider = \"openai\"\nbase_url = \"http://localhost:1/v1\"\nmodel = \"m\"\nbatch = true\n[committee]\nmembers = [\"o\"]\n";
    let cfg = load_ok("defaults", Some(JUDGE), &[]);
    let b = cfg.judges["o"].batch.clone().unwrap();
    assert_eq!(b, crate::config::BatchConfig::default());
    assert_eq!(b.price_factor, 0.5);
    assert_eq!(
        b.completion_window,
        std::time::Duration::from_secs(24 * 3600)
    );
    let cfg = load_ok(
        "set",
        Some(JUDGE),
        &[
            ("TRIBUNAL__JUDGES__O__BATCH_MAX_REQUESTS", "50"),
            ("TRIBUNAL__JUDGES__O__BATCH_MAX_WAIT_MS", "250"),
            ("TRIBUNAL__JUDGES__O__BATCH_POLL_MS", "100"),
            ("TRIBUNAL__JUDGES__O__BATCH_PRICE_FACTOR", "1.0"),
            ("TRIBUNAL__JUDGES__O__BATCH_MAX_ATTEMPTS", "3"),
        ],
    );
    let b = cfg.judges["o"].batch.clone().unwrap();
    assert_eq!(
        (b.max_requests, b.max_wait.as_millis(), b.poll.as_millis()),
        (50, 250, 100)
    );
    assert_eq!((b.price_factor, b.max_attempts), (1.0, 3));
    // The bound of a batched call covers every attempt's fill wait, window and polls.
    assert!(b.call_bound() > b.completion_window * 3);
    let live = JUDGE.replace("batch = true\n", "");
    assert!(load_ok("off", Some(&live), &[]).judges["o"].batch.is_none());
    let cases: &[(&str, &str, &[(&str, &str)], &str, &str)] = &[
        (
            "zero size",
            JUDGE,
            &[("TRIBUNAL__JUDGES__O__BATCH_MAX_REQUESTS", "0")],
            "judges.o.batch_max_requests",
            "outside 1..=50000",
        ),
        (
            "too big",
            JUDGE,
            &[("TRIBUNAL__JUDGES__O__BATCH_MAX_REQUESTS", "50001")],
            "judges.o.batch_max_requests",
            "outside 1..=50000",
        ),
        (
            "zero wait",
            JUDGE,
            &[("TRIBUNAL__JUDGES__O__BATCH_MAX_WAIT_MS", "0")],
            "judges.o.batch_max_wait_ms",
            "at least 1",
        ),
        (
            "zero poll",
            JUDGE,
            &[("TRIBUNAL__JUDGES__O__BATCH_POLL_MS", "0")],
            "judges.o.batch_poll_ms",
            "at least 1",
        ),
        (
            "window",
            JUDGE,
            &[("TRIBUNAL__JUDGES__O__BATCH_COMPLETION_WINDOW", "\"12h\"")],
            "judges.o.batch_completion_window",
            "only \"24h\"",
        ),
        (
            "factor",
            JUDGE,
            &[("TRIBUNAL__JUDGES__O__BATCH_PRICE_FACTOR", "2")],
            "judges.o.batch_price_factor",
            "outside [0, 1]",
        ),
        (
            "attempts",
            JUDGE,
            &[("TRIBUNAL__JUDGES__O__BATCH_MAX_ATTEMPTS", "0")],
            "judges.o.batch_max_attempts",
            "at least 1",
        ),
        (
            "without batch",
            &live,
            &[("TRIBUNAL__JUDGES__O__BATCH_POLL_MS", "10")],
            "judges.o.batch_poll_ms",
            "only used with `batch = true`",
        ),
        (
            "sim",
            "[judges.s]\nprovider = \"sim\"\nbatch = true\n[committee]\nmembers = [\"s\"]\n",
            &[],
            "judges.s.batch",
            "no Batch API",
        ),
    ];
    for (name, text, env, field, needle) in cases {
        match load_text(text, env) {
            Ok(_) => panic!("{name}: expected an error"),
            Err(e) => assert_problems(name, &e.problems(), &[(field, needle)]),
        }
    }
}

#[test]
fn redis_needs_every_shared_limit_to_cover_each_replica() {
    // A share of limit / replicas below one would admit nothing while Redis is down.
    let limited = super::DEFAULT_CONFIG
        .replace(
            "model = \"sim-a\"\n",
            "model = \"sim-a\"\nrequests_per_minute = 2\n",
        )
        .replace(
            "model = \"sim-b\"\n",
            "model = \"sim-b\"\ntokens_per_minute = 1\n",
        );
    let key = format!(
        "[[server.api_keys]]\nname = \"k\"\nblake3 = \"{}\"\nrequests_per_minute = 1\n",
        "ab".repeat(32)
    );
    let text = |replicas: u32| {
        format!("{limited}\n{key}\n[redis]\nurl = \"redis://h\"\nreplicas = {replicas}\n")
    };
    let problems = load_text(&text(3), &[])
        .map(|_| panic!("limits below replicas accepted"))
        .unwrap_err()
        .problems();
    assert_problems(
        "below replicas",
        &problems,
        &[
            (
                "judges.sim-a.requests_per_minute",
                "is 2, below redis.replicas = 3",
            ),
            ("judges.sim-b.tokens_per_minute", "raise it to at least 3"),
            (
                "server.api_keys[0].requests_per_minute",
                "lower redis.replicas",
            ),
        ],
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
    // At one unit per replica, or without [redis], the same limits are fine.
    load_ok("one replica", Some(&text(1)), &[]);
    load_ok("no redis", Some(&format!("{limited}\n{key}")), &[]);
}

#[test]
fn redis_url_display_masks_the_password() {
    let base = super::DEFAULT_CONFIG;
    for (url, shown) in [
        (
            "redis://:pw@10.0.0.5:6380/2",
            "redis://:***@10.0.0.5:6380/2",
        ),
        ("redis://app:pw@h:6379", "redis://app:***@h:6379"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        (
            "redis+unix:///run/redis.sock",
            "redis+unix:///run/redis.sock",
        ),
    ] {
        let cfg = load_ok(
            url,
            Some(&format!("{base}\n[redis]\nurl = \"{url}\"\n")),
            &[],
        );
        assert_eq!(cfg.redis.unwrap().url_display(), shown);
    }
}

/// The README's minimal config (the ```toml block after `<!-- minimal-config -->` in
/// "Configuration") loads as it is, with its key in the environment: real judges, not
/// the simulated committee.
#[test]
fn the_readme_minimal_config_loads() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let after = readme
        .split_once("<!-- minimal-config -->")
        .expect("README has the minimal-config marker")
        .1;
    let block = after
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a ```toml block follows the marker")
        .0;
    let cfg = load_ok("README minimal", Some(block), &[]);
    assert!(!cfg.simulated());
    assert_eq!(cfg.judges.len(), 3);
    assert_eq!(cfg.committee.quorum, 2);
    // The key comes from the env var it names (validated with an injected lookup).
    let raw: RawConfig = toml::from_str(block).unwrap();
    let cfg = raw
        .validate(
            &|k| (k == "OPENAI_API_KEY").then(|| "sk-test".to_owned()),
            LoadedFiles::default(),
        )
        .unwrap();
    for j in cfg.judges.values() {
        let ProviderConfig::OpenAi(o) = &j.provider else {
            panic!("{}: not openai", j.name)
        };
        assert_eq!(
            o.api_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned())
                .as_deref(),
            Some("sk-test")
        );
        assert!(o.base_url.ends_with("/v1"), "{}", o.base_url);
    }
}

/// A file with `[server]` only keeps the built-in simulated committee (it failed with
/// "judges: define at least one judge"); a file with one of `[judges]` / `[committee]`
/// still needs both.
#[test]
fn a_server_only_file_keeps_the_simulated_committee() {
    let cfg = load_ok(
        "server only",
        Some("[server]\nhttp_addr = \"127.0.0.1:9191\"\nmax_items_per_job = 5\n"),
        &[],
    );
    assert!(cfg.simulated());
    assert_eq!(cfg.judges.len(), 3);
    assert_eq!(cfg.server.max_items_per_job, 5);
    assert_eq!(cfg.server.http_addr.port(), 9191);
    let err = load_text("[committee]\nmembers = [\"x\"]\n", &[]).unwrap_err();
    assert!(
        err.problems().iter().any(|p| p.starts_with("judges")),
        "{:?}",
        err.problems()
    );
}

/// `config check`'s TOML: every section in the file's key names, secrets masked, and
/// (without secrets) it loads back to the same configuration.
#[test]
fn the_resolved_config_renders_as_toml_with_secrets_masked() {
    let text = r#"
[judges.a]
provider = "openai"
base_url = "https://alice:s3cret-pw@llm.example.com/v1"
model = "gpt-4.1"
api_key_env = "OPENAI_API_KEY"
headers = { "authorization" = "Bearer sk-header-secret" }
requests_per_minute = 600

[judges.b]
provider = "sim"
model = "sim-b"
[judges.b.sim]
seed = 4

[committee]
members = ["a", { judge = "b", weight = 2.0 }]
consensus = "weighted"
quorum = 1

[server]
database_url = "postgres://tribunal:db-pass@db.example.com/tribunal"

[telemetry]
otlp_endpoint = "https://user:otlp-pass@otel.example.com/v1/traces"
"#;
    let cfg = load_ok("render", Some(text), &[]);
    let out = super::render_resolved_toml(&cfg);
    for secret in [
        "s3cret-pw",
        "sk-header-secret",
        "db-pass",
        "otlp-pass",
        "alice",
    ] {
        assert!(!out.contains(secret), "{secret} in:\n{out}");
    }
    for want in [
        "[judges.a]",
        "base_url = \"https://***@llm.example.com/v1\"",
        "api_key_env = \"OPENAI_API_KEY\"",
        "requests_per_minute = 600",
        "[judges.b.sim]",
        "consensus = \"weighted\"",
        "quorum = 1",
        "database_url = \"postgres://***@db.example.com/tribunal\"",
        "otlp_endpoint = \"https://***@otel.example.com/v1/traces\"",
        "timeout_ms = 30000",
    ] {
        assert!(out.contains(want), "{want} not in:\n{out}");
    }
    assert!(!out.contains("LimitsConfig"), "{out}");
    // The built-in config renders, loads back, and renders the same again.
    let default = load_ok("default", None, &[]);
    let once = super::render_resolved_toml(&default);
    let again = super::render_resolved_toml(&load_ok("rendered", Some(&once), &[]));
    assert_eq!(once, again);
}

#[test]
fn urls_are_masked_for_display() {
    for (url, shown) in [
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        (
            "https://user:s3cret@api.example.org/v1",
            "https://***@api.example.org/v1",
        ),
        (
            "https://tok3n@api.example.org",
            "https://***@api.example.org",
        ),
        (
            "http://collector:4318/v1/traces?api-key=s3cret",
            "http://collector:4318/v1/traces?***",
        ),
        ("not a url", "not a url"),
    ] {
        assert_eq!(super::mask_url(url), shown, "{url}");
    }
}
