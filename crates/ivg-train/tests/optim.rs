//! AdamW, the learning-rate schedule, clipping and optimiser-state resume.

mod common;

use candle_core::{Device, Tensor, Var};
use common::{batch, trainable};
use ivg_train::{AdamW, Objective, OptimConfig, Sft};

fn config() -> OptimConfig {
    OptimConfig {
        lr: 0.1,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.01,
        warmup_steps: 2,
        total_steps: 10,
        min_lr_ratio: 0.1,
        clip_norm: None,
    }
}

#[test]
fn schedule_warms_up_then_follows_a_cosine() {
    let c = config();
    assert!((c.lr_at(0) - 0.05).abs() < 1e-12 && (c.lr_at(1) - 0.1).abs() < 1e-12);
    assert!((c.lr_at(2) - 0.1).abs() < 1e-12, "cosine starts at lr");
    // Halfway through the cosine: lr * (min + (1 - min) / 2).
    assert!((c.lr_at(6) - 0.1 * (0.1 + 0.9 * 0.5)).abs() < 1e-12);
    assert!((c.lr_at(10) - 0.01).abs() < 1e-12 && (c.lr_at(50) - 0.01).abs() < 1e-12);
    for bad in [
        OptimConfig {
            lr: 0.0,
            ..config()
        },
        OptimConfig {
            warmup_steps: 11,
            ..config()
        },
        OptimConfig {
            clip_norm: Some(-1.0),
            ..config()
        },
    ] {
        assert!(AdamW::new(bad, vec![]).is_err());
    }
}

#[test]
fn first_step_is_sign_descent_with_decoupled_decay() {
    let x = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).expect("t")).expect("var");
    let mut opt = AdamW::new(config(), vec![("x".into(), x.clone())]).expect("opt");
    let loss = (x.as_tensor() * &Tensor::new(&[0.5f32, 0.1], &Device::Cpu).expect("t"))
        .expect("mul")
        .sum_all()
        .expect("sum");
    let norm = opt.step(&loss.backward().expect("grads")).expect("step");
    assert!((norm - (0.25f64 + 0.01).sqrt()).abs() < 1e-6);
    // lr at step 0 is 0.05; m^ = g, v^ = g^2, so the update is g / (|g| + eps) = sign(g).
    let want = [
        1.0 * (1.0 - 0.05 * 0.01) - 0.05,
        -2.0 * (1.0 - 0.05 * 0.01) - 0.05,
    ];
    let got = x.as_tensor().to_vec1::<f32>().expect("v");
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
}

#[test]
fn clipping_scales_the_stored_gradient() {
    let x = Var::from_tensor(&Tensor::new(&[3.0f32, 4.0], &Device::Cpu).expect("t")).expect("var");
    let clipped = OptimConfig {
        clip_norm: Some(1.0),
        ..config()
    };
    let mut opt = AdamW::new(clipped, vec![("x".into(), x.clone())]).expect("opt");
    let loss = (x.as_tensor().sqr().expect("sq").sum_all().expect("sum") * 0.5).expect("half");
    let norm = opt.step(&loss.backward().expect("grads")).expect("step");
    assert!((norm - 5.0).abs() < 1e-6, "pre-clip norm {norm}");
    let (state, step) = opt.state();
    assert_eq!(step, 1);
    // m = (1 - b1) * g * (1 / 5) with g = (3, 4).
    let m = state["m.x"].to_vec1::<f32>().expect("m");
    assert!(
        (m[0] - 0.1 * 0.6).abs() < 1e-6 && (m[1] - 0.1 * 0.8).abs() < 1e-6,
        "{m:?}"
    );
}

#[test]
fn resumed_optimiser_continues_identically_and_sft_learns() {
    let (chosen, _) = batch();
    let run = |resume_at: Option<usize>| -> (Vec<f32>, Vec<f32>) {
        let (m, varmap) = trainable();
        let data = varmap.data().lock().expect("lock");
        let mut vars: Vec<(String, Var)> =
            data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        drop(data);
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        // Same start for both runs: overwrite the random init deterministically.
        for (i, (_, v)) in vars.iter().enumerate() {
            let n = v.elem_count();
            let vals: Vec<f32> = (0..n)
                .map(|j| (((i * 31 + j * 17) % 97) as f32 / 97.0 - 0.5) * 0.6)
                .collect();
            v.set(&Tensor::from_vec(vals, v.shape(), &Device::Cpu).expect("t"))
                .expect("set");
        }
        let mut opt = AdamW::new(
            OptimConfig {
                lr: 0.01,
                clip_norm: Some(1.0),
                total_steps: 30,
                ..config()
            },
            vars.clone(),
        )
        .expect("opt");
        let mut losses = Vec::new();
        for step in 0..30 {
            if resume_at == Some(step) {
                let (state, at) = opt.state();
                let mut fresh = AdamW::new(
                    OptimConfig {
                        lr: 0.01,
                        clip_norm: Some(1.0),
                        total_steps: 30,
                        ..config()
                    },
                    vars.clone(),
                )
                .expect("opt");
                fresh.restore(state, at).expect("restore");
                opt = fresh;
            }
            let loss = Sft.loss(&m, &chosen).expect("loss");
            losses.push(loss.to_scalar::<f32>().expect("s"));
            opt.step(&loss.backward().expect("grads")).expect("step");
        }
        let params = vars[0]
            .1
            .as_tensor()
            .flatten_all()
            .expect("f")
            .to_vec1::<f32>()
            .expect("v");
        (losses, params)
    };
    let (losses, straight) = run(None);
    let (_, resumed) = run(Some(12));
    assert_eq!(straight, resumed, "resume must not change the trajectory");
    assert!(
        losses[29] < 0.75 * losses[0],
        "SFT loss should fall: {} -> {}",
        losses[0],
        losses[29]
    );
}
