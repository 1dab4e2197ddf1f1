//! The guidance configuration file format (README) and the method matrix.

use ivg_decode::{ChunkRanking, GuidanceConfig, Method, SamplingConfig, TokenPolicy};

const IVG_TOML: &str = r#"
token = { kind = "implicit", beta = 1.0 }
chunk = "explicit"
width = 4
successors = 4
chunk_len = 5
max_new_tokens = 50
seed = 0
sampling = { temperature = 0.7 }
"#;

fn shape() -> GuidanceConfig {
    GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::None,
        width: 4,
        successors: 4,
        chunk_len: Some(5),
        max_new_tokens: 50,
        sampling: SamplingConfig {
            temperature: 0.7,
            top_k: None,
            top_p: None,
        },
        seed: 0,
        stop_strings: Vec::new(),
    }
}

#[test]
fn the_readme_toml_is_ivg() {
    let parsed: GuidanceConfig = toml::from_str(IVG_TOML).expect("parses");
    parsed.validate().expect("valid");
    assert_eq!(parsed, Method::Ivg.config(&shape(), 1.0));
}

#[test]
fn every_method_is_a_valid_configuration() {
    for m in Method::ALL {
        let c = m.config(&shape(), 1.0);
        c.validate().unwrap_or_else(|e| panic!("{}: {e}", m.name()));
        assert_eq!(Method::from_name(m.name()).expect("round trip"), m);
    }
    let bon = Method::BoNe.config(&shape(), 1.0);
    assert_eq!((bon.width, bon.successors, bon.chunk_len), (1, 16, None));
    let eft = Method::EftE.config(&shape(), 2.0);
    assert_eq!(
        (eft.token, eft.chunk, eft.width * eft.successors),
        (TokenPolicy::Explicit { beta: 2.0 }, ChunkRanking::None, 1)
    );
}

#[test]
fn unknown_fields_and_kinds_are_refused() {
    let typo = IVG_TOML.replace("successors", "sucessors");
    let err = toml::from_str::<GuidanceConfig>(&typo)
        .expect_err("typo")
        .to_string();
    assert!(err.contains("sucessors"), "{err}");
    let kind = IVG_TOML.replace("kind = \"implicit\"", "kind = \"dexperts\"");
    let err = toml::from_str::<GuidanceConfig>(&kind)
        .expect_err("kind")
        .to_string();
    assert!(err.contains("dexperts"), "{err}");
}
