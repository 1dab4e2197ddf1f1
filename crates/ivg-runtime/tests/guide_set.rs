//! Guide sets on the checked-in tiny checkpoints (no downloads): models named
//! twice load once, every role builds a working value function for each
//! feed, chunk-only values across vocabularies are wrapped to text level,
//! and loading errors name the spec field.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ivg_decode::{GuideSource, ValueRole};
use ivg_runtime::{
    ExplicitGuide, ExplicitSpec, GuideSet, GuideSpec, LoadedModel, ModelRef, PairSpec,
    PromptTemplate,
};
use ivg_tokenize::Tokenizer;
use ivg_value::{Feed, ValueFunction};

/// The tiny llama fixture with the word-level tokenizer over `t0 .. t95`.
fn tiny_llama(dir: &Path) -> PathBuf {
    let fixture = ivg_testkit::fixture("tiny/llama");
    let model = dir.join("tiny-llama");
    std::fs::create_dir_all(&model).expect("mkdir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), model.join(f)).expect("copy");
    }
    ivg_testkit::write_word_tokenizer(&model);
    model
}

/// A checkpoint trained by ivg-train's tests (`sft`, `reward`, `classifier`),
/// each with the same word-level vocabulary.
fn trained(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ivg-train/tests/fixtures/trained")
        .join(name)
}

/// A word-level tokenizer whose tokens are spelled `wN`: same size, other
/// vocabulary, so guides reading `tN` must be scored at text level.
fn other_vocab_tokenizer(dir: &Path) -> Arc<Tokenizer> {
    let mut json = ivg_testkit::word_tokenizer_json();
    let vocab: serde_json::Map<String, serde_json::Value> = (0..ivg_testkit::TINY_VOCAB)
        .map(|i| (format!("w{i}"), i.into()))
        .collect();
    json["model"]["vocab"] = vocab.into();
    json["model"]["unk_token"] = "w0".into();
    let path = dir.join("other-tokenizer.json");
    std::fs::write(&path, json.to_string()).expect("write");
    Arc::new(Tokenizer::from_file(&path).expect("tokenizer"))
}

/// Runs `value` over two prompts and two tokens; returns the values.
fn exercise(value: &mut dyn ValueFunction) -> Vec<f64> {
    value
        .begin(&["t5 t6".to_string(), "t7".to_string()])
        .expect("begin");
    for token in [3u32, 9] {
        value
            .observe(&[token, token + 1], &[true, true])
            .expect("observe");
    }
    let values = value.values().expect("values");
    assert_eq!(values.len(), 2);
    assert!(values.iter().all(|v| v.is_finite()), "{values:?}");
    values
}

#[test]
fn a_training_free_pair_and_a_repeated_model_load_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tiny_llama(dir.path());
    let spec = GuideSpec {
        implicit: vec![PairSpec {
            tuned_template: PromptTemplate::new("t1 t2 {prompt}").expect("template"),
            ..PairSpec::new(ModelRef::new(&m))
        }],
        // The same model as the Q value: still one copy.
        explicit: Some(ExplicitSpec::Q {
            model: ModelRef::new(&m),
            template: PromptTemplate::default(),
        }),
        beta_v: 1.0,
    };
    let set = GuideSet::load(&spec, ivg_testkit::word_tokenizer()).expect("load");
    let pair = &set.pairs()[0];
    assert!(Arc::ptr_eq(&pair.tuned, &pair.reference));
    let Some(ExplicitGuide::Q {
        model, tokenizer, ..
    }) = set.explicit()
    else {
        panic!("expected a Q value")
    };
    assert!(Arc::ptr_eq(model, &pair.tuned));
    assert!(Arc::ptr_eq(tokenizer, &pair.tokenizer));

    // A reference spelled as a table naming the same model is the same model;
    // another checkpoint is another model.
    let same: ModelRef =
        serde_json::from_value(serde_json::json!({ "path": m, "device": "cpu" })).expect("table");
    let two = GuideSpec {
        implicit: vec![
            PairSpec {
                reference: Some(same),
                ..PairSpec::new(ModelRef::new(&m))
            },
            PairSpec {
                reference: Some(ModelRef::new(trained("sft"))),
                ..PairSpec::new(ModelRef::new(&m))
            },
        ],
        ..GuideSpec::default()
    };
    let set = GuideSet::load(&two, ivg_testkit::word_tokenizer()).expect("load two");
    let [a, b] = set.pairs() else {
        panic!("two pairs")
    };
    assert!(Arc::ptr_eq(&a.tuned, &a.reference));
    assert!(Arc::ptr_eq(&a.tuned, &b.tuned));
    assert!(!Arc::ptr_eq(&b.tuned, &b.reference));
}

#[test]
fn every_role_builds_for_every_feed() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tiny_llama(dir.path());
    let spec = GuideSpec {
        implicit: vec![PairSpec {
            reference: Some(ModelRef::new(trained("sft"))),
            ..PairSpec::new(ModelRef::new(&m))
        }],
        explicit: Some(ExplicitSpec::Q {
            model: ModelRef::new(trained("sft")),
            template: PromptTemplate::new("t3 {prompt}").expect("template"),
        }),
        beta_v: 2.0,
    };
    let set = GuideSet::load(&spec, ivg_testkit::word_tokenizer()).expect("load");
    let source: Arc<dyn GuideSource> = Arc::new(set.named("preset"));
    assert_eq!(source.name(), "preset");
    assert!(source.has(ValueRole::Implicit) && source.has(ValueRole::Explicit));
    for role in [ValueRole::Implicit, ValueRole::Explicit] {
        let mut chunked = source.build(role, Feed::Chunked).expect("chunked");
        let mut stepped = source.build(role, Feed::Stepped).expect("stepped");
        assert_eq!(chunked.name(), role.name());
        // One vocabulary: nothing wrapped, and the two feeds agree.
        let (c, s) = (exercise(chunked.as_mut()), exercise(stepped.as_mut()));
        for (x, y) in c.iter().zip(&s) {
            assert!(
                (x - y).abs() < 1e-3,
                "{role:?}: chunked {c:?} vs stepped {s:?}"
            );
        }
        stepped.observe(&[1, 2], &[true, true]).expect("observe");
        assert!(stepped.guidance().expect("guidance").is_some(), "{role:?}");
    }
}

#[test]
fn scalar_and_classifier_values_build() {
    for (spec, kind) in [
        (
            ExplicitSpec::Scalar {
                model: ModelRef::new(trained("reward")),
                template: PromptTemplate::default(),
            },
            "scalar",
        ),
        (
            ExplicitSpec::Classifier {
                model: ModelRef::new(trained("classifier")),
                label: 1,
            },
            "classifier",
        ),
    ] {
        let spec = GuideSpec {
            explicit: Some(spec),
            ..GuideSpec::default()
        };
        let set = GuideSet::load(&spec, ivg_testkit::word_tokenizer()).expect(kind);
        assert!(!set.has(ValueRole::Implicit), "{kind}");
        let mut value = set.build(ValueRole::Explicit, Feed::Chunked).expect(kind);
        exercise(value.as_mut());
        let err = set
            .build(ValueRole::Implicit, Feed::Chunked)
            .err()
            .expect("no implicit")
            .to_string();
        assert!(
            err.contains("`implicit`") && err.contains("default"),
            "{err}"
        );
    }
}

#[test]
fn chunk_only_values_across_vocabularies_score_at_text_level() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tiny_llama(dir.path());
    let spec = GuideSpec {
        implicit: vec![PairSpec::new(ModelRef::new(&m))],
        ..GuideSpec::default()
    };
    let set = GuideSet::load(&spec, other_vocab_tokenizer(dir.path())).expect("load");
    let chunked = set
        .build(ValueRole::Implicit, Feed::Chunked)
        .expect("chunked");
    assert!(
        chunked.name().ends_with("(text level)"),
        "{}",
        chunked.name()
    );
    // A token-wise guide is left as is: the engine refuses the mismatch.
    let stepped = set
        .build(ValueRole::Implicit, Feed::Stepped)
        .expect("stepped");
    assert_eq!(stepped.name(), "implicit");
}

#[test]
fn loaded_models_carry_their_stop_ids_and_load_errors_name_the_field() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = tiny_llama(dir.path());
    let loaded: LoadedModel = ModelRef::new(&m).load().expect("load");
    let from_config = match loaded.model.config() {
        ivg_models::ModelConfig::Decoder(c) => c.eos_token_ids.clone(),
        other => panic!("a decoder: {}", other.architecture()),
    };
    let stops = loaded.stop_ids();
    assert!(from_config.iter().all(|id| stops.contains(id)), "{stops:?}");

    let missing = GuideSpec {
        explicit: Some(ExplicitSpec::Q {
            model: ModelRef::new("/no/such/value-model"),
            template: PromptTemplate::default(),
        }),
        ..GuideSpec::default()
    };
    let err = GuideSet::load(&missing, ivg_testkit::word_tokenizer())
        .err()
        .expect("missing model")
        .to_string();
    assert!(
        err.contains("explicit.model") && err.contains("/no/such/value-model"),
        "{err}"
    );
    // A causal checkpoint is not a scalar value: the missing head is named.
    let wrong = GuideSpec {
        explicit: Some(ExplicitSpec::Scalar {
            model: ModelRef::new(&m),
            template: PromptTemplate::default(),
        }),
        ..GuideSpec::default()
    };
    let err = GuideSet::load(&wrong, ivg_testkit::word_tokenizer())
        .err()
        .expect("no score head")
        .to_string();
    assert!(err.contains("score.weight"), "{err}");
}

#[test]
fn guide_sets_are_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<GuideSet>();
    shareable::<LoadedModel>();
    shareable::<GuideSpec>();
}
