//! The specs deserialize from TOML and JSON alike, refuse unknown fields and
//! templates without `{prompt}` by name, and expand into engine configs.

use std::path::PathBuf;

use ivg_decode::{ChunkRanking, TokenPolicy};
use ivg_runtime::{
    guidance_config, load_guidance_config, DeviceSpec, ExplicitSpec, GuidanceOverrides,
    GuidanceSpec, GuideSpec, ModelRef, PairSpec, PromptTemplate, Quant, RuntimeError,
};

const GUIDES_TOML: &str = r#"
beta_v = 0.5
[[implicit]]
tuned = "models/dpo"
tuned_template = "Be kind. {prompt}"
[[implicit]]
tuned = { path = "models/dpo2.gguf", quant = "f32" }
reference = { path = "asset:smollm2", device = "cuda:1" }
weight = 0.25
[explicit]
kind = "classifier"
model = "models/sentiment"
label = 0
"#;

const GUIDES_JSON: &str = r#"{
  "beta_v": 0.5,
  "implicit": [
    {"tuned": "models/dpo", "tuned_template": "Be kind. {prompt}"},
    {"tuned": {"path": "models/dpo2.gguf", "quant": "f32"},
     "reference": {"path": "asset:smollm2", "device": "cuda:1"}, "weight": 0.25}
  ],
  "explicit": {"kind": "classifier", "model": "models/sentiment", "label": 0}
}"#;

fn expected_guides() -> GuideSpec {
    GuideSpec {
        implicit: vec![
            PairSpec {
                tuned_template: PromptTemplate::new("Be kind. {prompt}").expect("template"),
                ..PairSpec::new(ModelRef::new("models/dpo"))
            },
            PairSpec {
                reference: Some(ModelRef::new("asset:smollm2").with_device(DeviceSpec::Cuda(1))),
                weight: 0.25,
                ..PairSpec::new(ModelRef::new("models/dpo2.gguf").with_quant(Quant::F32))
            },
        ],
        explicit: Some(ExplicitSpec::Classifier {
            model: ModelRef::new("models/sentiment"),
            label: 0,
        }),
        beta_v: 0.5,
    }
}

#[test]
fn guide_spec_reads_the_same_from_toml_and_json() {
    let from_toml: GuideSpec = toml::from_str(GUIDES_TOML).expect("toml");
    let from_json: GuideSpec = serde_json::from_str(GUIDES_JSON).expect("json");
    assert_eq!(from_toml, expected_guides());
    assert_eq!(from_json, expected_guides());
    from_toml.validate().expect("valid");
    // The first pair is training-free: its reference is the tuned model.
    assert_eq!(
        from_toml.implicit[0].reference(),
        &from_toml.implicit[0].tuned
    );
    assert_eq!(
        from_toml.implicit[0].reference_template.as_str(),
        "{prompt}"
    );
    // A spec survives a round trip through JSON.
    let again: GuideSpec =
        serde_json::from_str(&serde_json::to_string(&from_toml).expect("ser")).expect("de");
    assert_eq!(again, from_toml);
}

#[test]
fn explicit_kinds_take_their_own_fields() {
    let q: GuideSpec =
        toml::from_str("[explicit]\nkind = \"q\"\nmodel = \"m\"\ntemplate = \"Q: {prompt}\"")
            .expect("q");
    let Some(ExplicitSpec::Q { template, .. }) = &q.explicit else {
        panic!("expected q: {q:?}")
    };
    assert_eq!(template.render("hi"), "Q: hi");
    let scalar: GuideSpec =
        serde_json::from_str(r#"{"explicit": {"kind": "scalar", "model": "m"}}"#).expect("scalar");
    assert_eq!(
        scalar.explicit.as_ref().map(ExplicitSpec::kind),
        Some("scalar")
    );
    // The classifier rewards label 1 unless told otherwise, and has no template.
    let c: GuideSpec =
        toml::from_str("[explicit]\nkind = \"classifier\"\nmodel = \"m\"").expect("classifier");
    assert_eq!(
        c.explicit,
        Some(ExplicitSpec::Classifier {
            model: ModelRef::new("m"),
            label: 1
        })
    );
    let err = toml::from_str::<GuideSpec>(
        "[explicit]\nkind = \"classifier\"\nmodel = \"m\"\ntemplate = \"{prompt}\"",
    )
    .expect_err("a classifier has no template")
    .to_string();
    assert!(err.contains("template"), "{err}");
    let err = toml::from_str::<GuideSpec>("[explicit]\nkind = \"oracle\"\nmodel = \"m\"")
        .expect_err("unknown kind")
        .to_string();
    assert!(err.contains("oracle"), "{err}");
}

#[test]
fn unknown_fields_are_named() {
    let cases = [
        ("betav = 1.0", "betav"),
        (
            "[[implicit]]\ntuned = \"m\"\ntuned_templat = \"{prompt}\"",
            "tuned_templat",
        ),
        (
            "[[implicit]]\ntuned = { path = \"m\", devise = \"cpu\" }",
            "devise",
        ),
        (
            "[explicit]\nkind = \"q\"\nmodel = \"m\"\nlabel = 2",
            "label",
        ),
    ];
    for (text, field) in cases {
        let err = toml::from_str::<GuideSpec>(text)
            .expect_err(text)
            .to_string();
        assert!(err.contains(field), "{text}: {err}");
    }
    let err = serde_json::from_str::<GuideSpec>(r#"{"implicit": [{"tuned": "m", "wieght": 2}]}"#)
        .expect_err("json typo")
        .to_string();
    assert!(err.contains("wieght"), "{err}");
    let err = serde_json::from_str::<GuidanceSpec>(r#"{"method": "ivg", "topk": 5}"#)
        .expect_err("guidance typo")
        .to_string();
    assert!(err.contains("topk"), "{err}");
}

#[test]
fn a_template_without_the_placeholder_is_refused_by_name() {
    let err = PromptTemplate::new("Positive review:").expect_err("no placeholder");
    assert!(matches!(err, RuntimeError::Template { .. }));
    assert!(err.to_string().contains("`Positive review:`"), "{err}");
    let err = toml::from_str::<GuideSpec>(
        "[[implicit]]\ntuned = \"m\"\nreference_template = \"Neutral review:\"",
    )
    .expect_err("template")
    .to_string();
    assert!(
        err.contains("Neutral review:") && err.contains("{prompt}"),
        "{err}"
    );
    let t: PromptTemplate = serde_json::from_str(r#""<s>{prompt} {prompt}""#).expect("template");
    assert_eq!(t.render("x"), "<s>x x");
    assert_eq!(PromptTemplate::default().render("as is"), "as is");
}

#[test]
fn model_refs_parse_devices_and_quantization() {
    let m: ModelRef = serde_json::from_str(r#""a/b.gguf""#).expect("bare path");
    assert_eq!(m, ModelRef::new("a/b.gguf"));
    assert_eq!((m.device, m.quant), (DeviceSpec::Cpu, Quant::Keep));
    let m: ModelRef =
        serde_json::from_str(r#"{"path": "x", "device": "cuda", "quant": "dequantize"}"#)
            .expect("table");
    assert_eq!((m.device, m.quant), (DeviceSpec::Cuda(0), Quant::F32));
    assert_eq!(m.quant.policy(), ivg_models::QuantPolicy::Dequantize);
    assert_eq!(
        "cuda:3".parse::<DeviceSpec>().expect("cuda:3"),
        DeviceSpec::Cuda(3)
    );
    assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
    for bad in ["gpu", "cuda:x"] {
        let err = bad.parse::<DeviceSpec>().expect_err(bad).to_string();
        assert!(err.contains(&format!("`{bad}`")), "{err}");
    }
    let err = serde_json::from_str::<ModelRef>(r#"{"path": "x", "device": "tpu"}"#)
        .expect_err("device")
        .to_string();
    assert!(err.contains("tpu"), "{err}");
    assert!(serde_json::from_str::<ModelRef>(r#""""#).is_err());
    assert!(serde_json::from_str::<ModelRef>(r#"{"device": "cpu"}"#).is_err());
    #[cfg(not(feature = "cuda"))]
    {
        let err = DeviceSpec::Cuda(0)
            .device()
            .expect_err("no cuda")
            .to_string();
        assert!(
            err.contains("cuda:0") && err.contains("--features cuda"),
            "{err}"
        );
    }
}

#[test]
fn validation_names_the_field() {
    let spec: GuideSpec = toml::from_str("beta_v = nan").expect("toml");
    let err = spec.validate().expect_err("nan").to_string();
    assert!(err.contains("`beta_v`") && err.contains("NaN"), "{err}");
    let spec: GuideSpec =
        toml::from_str("[[implicit]]\ntuned = \"a\"\n[[implicit]]\ntuned = \"b\"\nweight = inf")
            .expect("toml");
    let err = spec.validate().expect_err("inf").to_string();
    assert!(err.contains("`implicit[1].weight`"), "{err}");
}

#[test]
fn unknown_assets_are_refused_without_fetching() {
    let err = ivg_runtime::resolve_path(std::path::Path::new("asset:no-such"))
        .expect_err("unknown asset")
        .to_string();
    assert!(err.contains("no-such") && err.contains("smollm2"), "{err}");
    let plain = ivg_runtime::resolve_path(std::path::Path::new("some/dir")).expect("path");
    assert_eq!(plain, PathBuf::from("some/dir"));
}

#[test]
fn guidance_specs_expand_methods_like_the_cli() {
    let spec: GuidanceSpec = toml::from_str(
        "method = \"IVG\"\nwidth = 2\nsuccessors = 3\nchunk_len = 4\nbeta = 0.5\nstop = [\"\\n\"]",
    )
    .expect("toml");
    let c = spec.config().expect("ivg");
    assert_eq!(c.token, TokenPolicy::Implicit { beta: 0.5 });
    assert_eq!(c.chunk, ChunkRanking::Explicit);
    assert_eq!((c.width, c.successors, c.chunk_len), (2, 3, Some(4)));
    assert_eq!(c.stop_strings, vec!["\n".to_string()]);
    assert_eq!((c.max_new_tokens, c.sampling.temperature), (64, 0.7));
    // BoN: W = 1, K = W*K, L = infinity.
    let bon = guidance_config("boni", &GuidanceOverrides::default()).expect("boni");
    assert_eq!((bon.width, bon.successors, bon.chunk_len), (1, 16, None));
    // Overrides replace only what they set; chunk_len 0 is infinity.
    let o: GuidanceOverrides =
        serde_json::from_str(r#"{"chunk_len": 0, "seed": 9, "top_k": 5}"#).expect("overrides");
    let c = spec.with_overrides(&o).config().expect("overridden");
    assert_eq!((c.chunk_len, c.seed, c.sampling.top_k), (None, 9, Some(5)));
    assert_eq!(c.width, 2);
    // Errors name the field or the method.
    let err = guidance_config("dexperts", &GuidanceOverrides::default())
        .expect_err("method")
        .to_string();
    assert!(err.contains("unknown method `dexperts`"), "{err}");
    let zero = GuidanceOverrides {
        width: Some(0),
        ..GuidanceOverrides::default()
    };
    let err = guidance_config("cbsi", &zero)
        .expect_err("width")
        .to_string();
    assert!(err.contains("width"), "{err}");
}

#[test]
fn guidance_and_guide_files_name_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = guidance_config("cbsi", &GuidanceOverrides::default()).expect("cbsi");
    let json = dir.path().join("g.json");
    std::fs::write(&json, serde_json::to_string(&config).expect("json")).expect("write");
    assert_eq!(load_guidance_config(&json).expect("json file"), config);
    let toml_path = dir.path().join("g.toml");
    std::fs::write(&toml_path, toml::to_string(&config).expect("toml")).expect("write");
    assert_eq!(load_guidance_config(&toml_path).expect("toml file"), config);

    let bad = dir.path().join("bad.toml");
    let text = toml::to_string(&config)
        .expect("toml")
        .replace("width = 4", "width = 0");
    std::fs::write(&bad, text).expect("write");
    let err = load_guidance_config(&bad).expect_err("width 0").to_string();
    assert!(err.contains("bad.toml") && err.contains("width"), "{err}");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "withd = 3\n").expect("write");
    let err = load_guidance_config(&typo).expect_err("typo").to_string();
    assert!(err.contains("typo.toml") && err.contains("withd"), "{err}");
    let missing = dir.path().join("missing.json");
    let err = load_guidance_config(&missing)
        .expect_err("missing")
        .to_string();
    assert!(err.contains("missing.json"), "{err}");

    let guides = dir.path().join("guides.toml");
    std::fs::write(&guides, GUIDES_TOML).expect("write");
    assert_eq!(
        GuideSpec::from_file(&guides).expect("guides"),
        expected_guides()
    );
    std::fs::write(&guides, "beta_v = inf\n").expect("write");
    let err = GuideSpec::from_file(&guides).expect_err("inf").to_string();
    assert!(
        err.contains("guides.toml") && err.contains("beta_v"),
        "{err}"
    );
}

#[test]
fn the_documented_example_parses() {
    // The example of `guide_spec.rs`'s module documentation.
    let text = r#"
beta_v = 1.0
[[implicit]]
tuned = "asset:smollm2"
tuned_template = "A positive review: {prompt}"
[explicit]
kind = "classifier"
model = { path = "models/sentiment", device = "cpu" }
label = 1
"#;
    let spec: GuideSpec = toml::from_str(text).expect("the documented example");
    assert_eq!(spec.implicit[0].tuned, ModelRef::new("asset:smollm2"));
    assert_eq!(
        spec.explicit,
        Some(ExplicitSpec::Classifier {
            model: ModelRef::new("models/sentiment"),
            label: 1
        })
    );
}
