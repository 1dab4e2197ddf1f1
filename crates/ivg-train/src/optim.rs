//! The optimiser of the training loop: AdamW with decoupled weight decay
//! (Loshchilov & Hutter 2019, as `torch.optim.AdamW`), linear warm-up then
//! cosine decay of the learning rate, and clipping by global gradient norm.
//! Ours rather than candle's `AdamW` because a resumed run needs the moment
//! estimates, which candle keeps private.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Typed, validated optimiser settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub warmup_steps: usize,
    pub total_steps: usize,
    /// Learning rate at the end of the cosine, as a fraction of `lr`.
    #[serde(default)]
    pub min_lr_ratio: f64,
    /// Global gradient-norm clip; `None` disables clipping.
    #[serde(default)]
    pub clip_norm: Option<f64>,
}

fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}
fn default_eps() -> f64 {
    1e-8
}

impl OptimConfig {
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad =
            |field: &str, v: String| Err(TrainError::Config(format!("optimizer.{field}: {v}")));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", format!("must be positive, got {}", self.lr));
        }
        let (b1, b2) = self.betas;
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return bad("betas", format!("must lie in [0, 1), got ({b1}, {b2})"));
        }
        if self.total_steps == 0 || self.warmup_steps > self.total_steps {
            return bad(
                "total_steps",
                format!(
                    "{} with {} warm-up steps",
                    self.total_steps, self.warmup_steps
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(
                "min_lr_ratio",
                format!("must lie in [0, 1], got {}", self.min_lr_ratio),
            );
        }
        if self.clip_norm.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return bad(
                "clip_norm",
                format!("must be positive, got {:?}", self.clip_norm),
            );
        }
        Ok(())
    }

    /// Learning rate of (0-based) `step`: linear warm-up to `lr` over
    /// `warmup_steps`, then cosine from `lr` to `min_lr_ratio * lr` at `total_steps`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.total_steps - self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
    }
}

/// Moment estimates of one variable.
struct Moments {
    m: Tensor,
    v: Tensor,
}

/// AdamW over named variables.
pub struct AdamW {
    config: OptimConfig,
    vars: Vec<(String, Var)>,
    moments: HashMap<String, Moments>,
    step: usize,
}

impl AdamW {
    pub fn new(config: OptimConfig, vars: Vec<(String, Var)>) -> Result<Self, TrainError> {
        config.validate()?;
        Ok(Self {
            config,
            vars,
            moments: HashMap::new(),
            step: 0,
        })
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// The global L2 norm of the gradients (variables without one count 0).
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64, TrainError> {
        let mut total = 0f64;
        for (_, v) in &self.vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(total.sqrt())
    }

    /// One update from `grads`; returns the pre-clipping gradient norm.
    pub fn step(&mut self, grads: &GradStore) -> Result<f64, TrainError> {
        let norm = self.grad_norm(grads)?;
        if !norm.is_finite() {
            return Err(TrainError::Numerics(format!(
                "gradient norm is {norm} at step {}",
                self.step
            )));
        }
        let scale = match self.config.clip_norm {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        let lr = self.config.lr_at(self.step);
        let (b1, b2) = self.config.betas;
        let t = (self.step + 1) as i32;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (name, var) in &self.vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = (g * scale)?;
            let prev = match self.moments.remove(name) {
                Some(m) => m,
                None => Moments {
                    m: g.zeros_like()?,
                    v: g.zeros_like()?,
                },
            };
            let m = ((prev.m * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((prev.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.config.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * self.config.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.moments.insert(name.clone(), Moments { m, v });
        }
        self.step += 1;
        Ok(norm)
    }

    /// Optimiser state as named tensors (`m.NAME`, `v.NAME`) and the step, for checkpoints.
    pub fn state(&self) -> (HashMap<String, Tensor>, usize) {
        let mut map = HashMap::new();
        for (name, mo) in &self.moments {
            map.insert(format!("m.{name}"), mo.m.clone());
            map.insert(format!("v.{name}"), mo.v.clone());
        }
        (map, self.step)
    }

    /// Restores [`AdamW::state`]; a moment for an unknown variable is an error.
    pub fn restore(
        &mut self,
        state: HashMap<String, Tensor>,
        step: usize,
    ) -> Result<(), TrainError> {
        let known: std::collections::HashSet<&str> =
            self.vars.iter().map(|(n, _)| n.as_str()).collect();
        let mut moments: HashMap<String, (Option<Tensor>, Option<Tensor>)> = HashMap::new();
        for (key, t) in state {
            let (kind, name) = key
                .split_once('.')
                .ok_or_else(|| TrainError::Config(format!("optimizer state: bad key `{key}`")))?;
            if !known.contains(name) {
                return Err(TrainError::Config(format!(
                    "optimizer state: `{name}` is not a variable of this model"
                )));
            }
            let e = moments.entry(name.to_string()).or_default();
            match kind {
                "m" => e.0 = Some(t),
                "v" => e.1 = Some(t),
                other => {
                    return Err(TrainError::Config(format!(
                        "optimizer state: unknown moment `{other}`"
                    )))
                }
            }
        }
        self.moments.clear();
        for (name, pair) in moments {
            match pair {
                (Some(m), Some(v)) => {
                    self.moments.insert(name, Moments { m, v });
                }
                _ => {
                    return Err(TrainError::Config(format!(
                        "optimizer state: `{name}` lacks m or v"
                    )))
                }
            }
        }
        self.step = step;
        Ok(())
    }
}
