//! A loaded guide set: the models a [`GuideSpec`] names, behind `Arc`s, from
//! which value functions are built on demand ([`GuideSource`]). Loading once
//! and building many is what lets a server hold one set per preset and give
//! each batch of requests fresh, row-less value functions over shared weights.

use std::collections::HashMap;
use std::sync::Arc;

use ivg_decode::{DecodeError, GuideSource, ValueRole};
use ivg_models::loader::BertWithHead;
use ivg_models::{CausalLm, ScalarLm};
use ivg_tokenize::Tokenizer;
use ivg_value::{
    encode_prompt, wrap_if_needed, ClassifierValue, Feed, ImplicitPair, ImplicitValue, QValue,
    ScalarValue, ValueError, ValueFunction,
};

use crate::{ExplicitSpec, GuideSpec, LoadedModel, ModelRef, PromptTemplate, RuntimeError};

/// One loaded tuned/reference pair (the two `Arc`s are the same model for a
/// training-free pair).
#[derive(Clone)]
pub struct GuidePair {
    pub tuned: Arc<CausalLm>,
    pub reference: Arc<CausalLm>,
    /// The tuned model's tokenizer, which the reference shares.
    pub tokenizer: Arc<Tokenizer>,
    pub tuned_template: PromptTemplate,
    pub reference_template: PromptTemplate,
    pub weight: f64,
}

/// The loaded explicit value model, by kind.
#[derive(Clone)]
pub enum ExplicitGuide {
    Q {
        model: Arc<CausalLm>,
        tokenizer: Arc<Tokenizer>,
        template: PromptTemplate,
    },
    Scalar {
        model: Arc<ScalarLm>,
        tokenizer: Arc<Tokenizer>,
        template: PromptTemplate,
    },
    Classifier {
        model: Arc<BertWithHead>,
        tokenizer: Arc<Tokenizer>,
        label: usize,
    },
}

/// The models of one guide set and the base tokenizer its values are read
/// against; `Send + Sync`, so wrap it in an `Arc` to share it.
pub struct GuideSet {
    name: String,
    base_tokenizer: Arc<Tokenizer>,
    pairs: Vec<GuidePair>,
    explicit: Option<ExplicitGuide>,
    beta_v: f64,
}

/// Causal LMs loaded so far, by resolved reference: a model named twice
/// (a training-free pair, or a Q value that is also a tuned model) loads once.
#[derive(Default)]
struct LoadCache {
    models: HashMap<ModelRef, LoadedModel>,
}

impl LoadCache {
    fn causal(&mut self, model: &ModelRef, field: &str) -> Result<LoadedModel, RuntimeError> {
        let key = model.resolved().map_err(|e| e.in_field(field))?;
        if let Some(loaded) = self.models.get(&key) {
            return Ok(loaded.clone());
        }
        let loaded = key.load().map_err(|e| e.in_field(field))?;
        self.models.insert(key, loaded.clone());
        Ok(loaded)
    }
}

impl GuideSet {
    /// Validates `spec` and loads its models (each distinct one once); the
    /// set is named `default` (see [`GuideSet::named`]).
    pub fn load(spec: &GuideSpec, base_tokenizer: Arc<Tokenizer>) -> Result<Self, RuntimeError> {
        spec.validate()?;
        let mut cache = LoadCache::default();
        let mut pairs = Vec::with_capacity(spec.implicit.len());
        for (i, p) in spec.implicit.iter().enumerate() {
            let tuned = cache.causal(&p.tuned, &format!("implicit[{i}].tuned"))?;
            let reference = cache.causal(p.reference(), &format!("implicit[{i}].reference"))?;
            pairs.push(GuidePair {
                tuned: tuned.model,
                reference: reference.model,
                tokenizer: tuned.tokenizer,
                tuned_template: p.tuned_template.clone(),
                reference_template: p.reference_template.clone(),
                weight: p.weight,
            });
        }
        let explicit = match &spec.explicit {
            None => None,
            Some(e) => Some(load_explicit(e, &mut cache)?),
        };
        Ok(Self {
            name: "default".into(),
            base_tokenizer,
            pairs,
            explicit,
            beta_v: spec.beta_v,
        })
    }

    /// This set under another name (a server preset's).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that every causal model of `roles` holds `text` under its
    /// template plus `new_tokens`. A classifier value truncates long texts
    /// (as transformers does), so it needs no check.
    pub fn check_fits(
        &self,
        text: &str,
        new_tokens: usize,
        roles: &[ValueRole],
    ) -> Result<(), RuntimeError> {
        let mut models: Vec<(&'static str, &CausalLm, &Tokenizer, &PromptTemplate)> = Vec::new();
        if roles.contains(&ValueRole::Implicit) {
            for p in &self.pairs {
                models.push(("implicit", &p.tuned, &p.tokenizer, &p.tuned_template));
                models.push((
                    "implicit",
                    &p.reference,
                    &p.tokenizer,
                    &p.reference_template,
                ));
            }
        }
        if roles.contains(&ValueRole::Explicit) {
            match &self.explicit {
                Some(ExplicitGuide::Q {
                    model,
                    tokenizer,
                    template,
                }) => {
                    models.push(("explicit", model, tokenizer, template));
                }
                Some(ExplicitGuide::Scalar {
                    model,
                    tokenizer,
                    template,
                }) => {
                    let prompt_tokens = encode_prompt(tokenizer, template.as_str(), text)?.len();
                    fits(
                        "explicit",
                        model.name(),
                        prompt_tokens,
                        new_tokens,
                        model.context_length(),
                    )?;
                }
                Some(ExplicitGuide::Classifier { .. }) | None => {}
            }
        }
        for (role, model, tokenizer, template) in models {
            let prompt_tokens = encode_prompt(tokenizer, template.as_str(), text)?.len();
            fits(
                role,
                model.name(),
                prompt_tokens,
                new_tokens,
                model.context_length(),
            )?;
        }
        Ok(())
    }

    pub fn pairs(&self) -> &[GuidePair] {
        &self.pairs
    }

    pub fn explicit(&self) -> Option<&ExplicitGuide> {
        self.explicit.as_ref()
    }

    pub fn base_tokenizer(&self) -> &Arc<Tokenizer> {
        &self.base_tokenizer
    }

    pub fn beta_v(&self) -> f64 {
        self.beta_v
    }

    /// A fresh value function for `role` fed as `feed`. A chunk-only
    /// ([`Feed::Chunked`]) value whose vocabulary differs from the base's is
    /// wrapped to score at text level (decode, re-tokenize); a stepped one is
    /// returned as is, so that the engine refuses the mismatch by name.
    pub fn build_value(
        &self,
        role: ValueRole,
        feed: Feed,
    ) -> Result<Box<dyn ValueFunction>, ValueError> {
        let value = match role {
            ValueRole::Implicit => self.implicit_value(feed)?,
            ValueRole::Explicit => self.explicit_value(feed)?,
        };
        Ok(match feed {
            Feed::Chunked => wrap_if_needed(value, self.base_tokenizer.clone()),
            Feed::Stepped => value,
        })
    }

    fn missing(&self, role: ValueRole, field: &str) -> ValueError {
        ValueError::Invalid {
            name: role.name().into(),
            problem: format!("guide set `{}` has no `{field}` model", self.name),
        }
    }

    fn implicit_value(&self, feed: Feed) -> Result<Box<dyn ValueFunction>, ValueError> {
        if self.pairs.is_empty() {
            return Err(self.missing(ValueRole::Implicit, "implicit"));
        }
        let pairs = self
            .pairs
            .iter()
            .map(|p| ImplicitPair {
                tuned: p.tuned.clone(),
                tuned_template: p.tuned_template.to_string(),
                reference: p.reference.clone(),
                reference_template: p.reference_template.to_string(),
                tokenizer: p.tokenizer.clone(),
                weight: p.weight,
            })
            .collect();
        let name = ValueRole::Implicit.name();
        Ok(Box::new(ImplicitValue::new(
            name,
            pairs,
            self.beta_v,
            feed,
        )?))
    }

    fn explicit_value(&self, feed: Feed) -> Result<Box<dyn ValueFunction>, ValueError> {
        let name = ValueRole::Explicit.name();
        let Some(explicit) = &self.explicit else {
            return Err(self.missing(ValueRole::Explicit, "explicit"));
        };
        Ok(match explicit {
            ExplicitGuide::Q {
                model,
                tokenizer,
                template,
            } => Box::new(QValue::new(
                name,
                model.clone(),
                template.as_str(),
                tokenizer.clone(),
                self.beta_v,
                feed,
            )?),
            // Scalar and classifier values cannot guide token-wise; the engine
            // says so when a token-wise method asks them for offsets.
            ExplicitGuide::Scalar {
                model,
                tokenizer,
                template,
            } => Box::new(ScalarValue::new(
                name,
                model.clone(),
                template.as_str(),
                tokenizer.clone(),
                self.beta_v,
            )?),
            ExplicitGuide::Classifier {
                model,
                tokenizer,
                label,
            } => Box::new(ClassifierValue::new(
                name,
                model.clone(),
                tokenizer.clone(),
                self.base_tokenizer.clone(),
                *label,
                self.beta_v,
            )?),
        })
    }
}

fn load_explicit(e: &ExplicitSpec, cache: &mut LoadCache) -> Result<ExplicitGuide, RuntimeError> {
    const FIELD: &str = "explicit.model";
    let in_field = |e: RuntimeError| e.in_field(FIELD);
    Ok(match e {
        ExplicitSpec::Q { model, template } => {
            let loaded = cache.causal(model, FIELD)?;
            ExplicitGuide::Q {
                model: loaded.model,
                tokenizer: loaded.tokenizer,
                template: template.clone(),
            }
        }
        ExplicitSpec::Scalar { model, template } => {
            let model = model.resolved().map_err(in_field)?;
            ExplicitGuide::Scalar {
                model: Arc::new(model.load_scalar("explicit").map_err(in_field)?),
                tokenizer: Arc::new(model.load_tokenizer().map_err(in_field)?),
                template: template.clone(),
            }
        }
        ExplicitSpec::Classifier { model, label } => {
            let model = model.resolved().map_err(in_field)?;
            ExplicitGuide::Classifier {
                model: Arc::new(model.load_classifier().map_err(in_field)?),
                tokenizer: Arc::new(model.load_tokenizer().map_err(in_field)?),
                label: *label,
            }
        }
    })
}

impl GuideSource for GuideSet {
    fn name(&self) -> &str {
        &self.name
    }

    fn has(&self, role: ValueRole) -> bool {
        match role {
            ValueRole::Implicit => !self.pairs.is_empty(),
            ValueRole::Explicit => self.explicit.is_some(),
        }
    }

    fn build(&self, role: ValueRole, feed: Feed) -> Result<Box<dyn ValueFunction>, DecodeError> {
        Ok(self.build_value(role, feed)?)
    }
}

fn fits(
    role: &'static str,
    model: &str,
    prompt_tokens: usize,
    new_tokens: usize,
    context: usize,
) -> Result<(), RuntimeError> {
    if prompt_tokens + new_tokens <= context {
        return Ok(());
    }
    Err(RuntimeError::GuideContext {
        model: model.to_string(),
        role,
        prompt_tokens,
        new_tokens,
        context,
    })
}
