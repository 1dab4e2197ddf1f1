//! The Q8_0 matmul kernel (`Q8Matrix`): against candle's `QMatMul` on the
//! same weights, against an f32 matmul of the dequantized weights, kernel
//! against kernel, row invariance across batch sizes, shapes and errors.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use ivg_models::layers::{Linear, LinearWeight, Q8Kernel, Q8Matrix};

mod common;

/// Deterministic values in [-scale, scale), the scale changing every 32
/// values so that blocks get different Q8_0 scales.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let unit = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            unit * [0.05, 1.0, 3.0, 0.4, 7.0][(i / 32) % 5]
        })
        .collect()
}

fn matrix(rows: usize, cols: usize, seed: u64) -> Tensor {
    Tensor::from_vec(values(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap()
}

fn q8_weight(out: usize, inp: usize, seed: u64) -> QTensor {
    QTensor::quantize(&matrix(out, inp, seed), GgmlDType::Q8_0).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// candle quantizes the activations by the same rule, so only the float
/// summation order differs. (Shapes with `in` a multiple of 256 are left out:
/// there candle may take its repacked Q8_K path, which quantizes activations
/// per 256 values.)
#[test]
fn matches_candle_qmatmul() {
    for (out, inp) in [(37, 96), (64, 576), (203, 160), (8, 32)] {
        let q = q8_weight(out, inp, 1);
        let ours = Q8Matrix::from_qtensor(&q).unwrap();
        let theirs = QMatMul::from_qtensor(q).unwrap();
        for m in [1, 3, 8, 17] {
            let x = matrix(m, inp, 2 + m as u64);
            let y = rows(&ours.forward(&x).unwrap());
            let z = rows(&theirs.forward(&x).unwrap());
            for (r, (yr, zr)) in y.iter().zip(&z).enumerate() {
                for (o, (a, b)) in yr.iter().zip(zr).enumerate() {
                    let tol = 1e-4 * (1.0 + b.abs());
                    assert!(
                        (a - b).abs() <= tol,
                        "({out}, {inp}) m={m} [{r}, {o}]: {a} vs {b}"
                    );
                }
            }
        }
    }
}

/// Against `x W^T` in f64 with `W` dequantized: the only error is the
/// activations' quantization. Per value it is at most `d / 2` for the
/// rounding plus `127 * |d - f16(d)| <= 127 * d * 2^-11` for the f16 scale,
/// under `0.57 d`, so `|y - y_ref| <= sum_b 0.57 d_b sum_{i in b} |w_i|`,
/// plus a little float rounding.
#[test]
fn tracks_f32_matmul_within_the_activation_quantization_bound() {
    let (out, inp, m) = (45, 160, 6);
    let q = q8_weight(out, inp, 3);
    let w = rows(&q.dequantize(&Device::Cpu).unwrap());
    let ours = Q8Matrix::from_qtensor(&q).unwrap();
    let x = matrix(m, inp, 4);
    let y = rows(&ours.forward(&x).unwrap());
    let mut worst = 0f64;
    for (xr, yr) in rows(&x).iter().zip(&y) {
        let d: Vec<f64> = xr
            .chunks(32)
            .map(|b| b.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 127.0)
            .collect();
        for (wr, &got) in w.iter().zip(yr) {
            let exact: f64 = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
            let size: f64 = wr
                .iter()
                .zip(xr)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let bound: f64 = wr
                .iter()
                .enumerate()
                .map(|(i, &a)| 0.57 * d[i / 32] * a.abs() as f64)
                .sum();
            let err = (got as f64 - exact).abs();
            assert!(
                err <= bound + 1e-5 * (1.0 + size),
                "{got} vs {exact}: error {err} > {bound}"
            );
            worst = worst.max(err / bound);
        }
    }
    // The bound is not vacuous: the error uses a good part of it somewhere.
    assert!(worst > 0.05, "worst error / bound = {worst}");
}

/// Every kernel this CPU runs gives the portable kernel's bits.
#[test]
fn simd_kernels_equal_scalar() {
    let kernels = Q8Kernel::available();
    assert!(kernels.contains(&Q8Kernel::Scalar));
    for (out, inp, m) in [(45, 96, 9), (203, 576, 5), (8, 32, 1), (17, 160, 4)] {
        let w = Q8Matrix::from_qtensor(&q8_weight(out, inp, 5)).unwrap();
        let x = matrix(m, inp, 6);
        let want = bits(&w.forward_with(&x, Q8Kernel::Scalar).unwrap());
        for &k in &kernels {
            assert_eq!(
                bits(&w.forward_with(&x, k).unwrap()),
                want,
                "{k:?} ({out}, {inp}) m={m}"
            );
        }
    }
}

/// Row `r` of an `m`-row call is bit-identical to a one-row call of that row.
#[test]
fn rows_do_not_depend_on_the_batch() {
    let (out, inp) = (45, 96);
    let w = Q8Matrix::from_qtensor(&q8_weight(out, inp, 7)).unwrap();
    let x = matrix(17, inp, 8);
    for k in Q8Kernel::available() {
        let single: Vec<Vec<u32>> = (0..17)
            .map(|r| bits(&w.forward_with(&x.narrow(0, r, 1).unwrap(), k).unwrap()))
            .collect();
        for m in 1..=17 {
            let y = w.forward_with(&x.narrow(0, 0, m).unwrap(), k).unwrap();
            for (r, want) in single.iter().enumerate().take(m) {
                assert_eq!(&bits(&y.get(r).unwrap()), want, "{k:?}: row {r} of {m}");
            }
        }
    }
}

#[test]
fn keeps_leading_dimensions() {
    let w = Q8Matrix::from_qtensor(&q8_weight(45, 96, 9)).unwrap();
    let x = matrix(6, 96, 10);
    let flat = w.forward(&x).unwrap();
    let y = w.forward(&x.reshape((2, 3, 96)).unwrap()).unwrap();
    assert_eq!(y.dims(), &[2, 3, 45]);
    assert_eq!(bits(&y), bits(&flat));
    let empty = w.forward(&Tensor::zeros((0, 96), candle_core::DType::F32, &Device::Cpu).unwrap());
    assert_eq!(empty.unwrap().dims(), &[0, 45]);
}

/// `Q8Matrix::quantize` follows candle's Q8_0 quantizer bit for bit.
#[test]
fn own_quantizer_equals_candle_quantizer() {
    let w = matrix(19, 128, 11);
    let ours = Q8Matrix::quantize(&w).unwrap();
    let theirs = Q8Matrix::from_qtensor(&QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
    assert_eq!((ours.rows(), ours.cols()), (19, 128));
    let x = matrix(3, 128, 12);
    assert_eq!(
        bits(&ours.forward(&x).unwrap()),
        bits(&theirs.forward(&x).unwrap())
    );
}

#[test]
fn errors_name_the_shape() {
    let err = Q8Matrix::quantize(&matrix(4, 48, 13))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("[4, 48]") && err.contains("48 is not a multiple of 32"),
        "{err}"
    );
    let err =
        Q8Matrix::quantize(&Tensor::zeros(64, candle_core::DType::F32, &Device::Cpu).unwrap())
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("[64]") && err.contains("not a matrix"),
        "{err}"
    );
    let w = Q8Matrix::from_qtensor(&q8_weight(45, 96, 14)).unwrap();
    let err = w.forward(&matrix(2, 64, 15)).unwrap_err().to_string();
    assert!(err.contains("[2, 64]") && err.contains("(45, 96)"), "{err}");
    let q4 = QTensor::quantize(&matrix(8, 64, 16), GgmlDType::Q4_0).unwrap();
    let err = Q8Matrix::from_qtensor(&q4).unwrap_err().to_string();
    assert!(err.contains("Q4_0 is not Q8_0"), "{err}");
}

/// `Linear` runs CPU Q8_0 weights on `Q8Matrix`, other quantized types on candle.
#[test]
fn linear_uses_the_kernel_for_q8_0_only() {
    let q8 = Arc::new(q8_weight(45, 96, 17));
    let weight = LinearWeight::quantized(q8.clone()).unwrap();
    assert!(matches!(weight, LinearWeight::Q8(_)), "{weight:?}");
    let bias = Tensor::from_vec(values(45, 18), 45, &Device::Cpu).unwrap();
    let linear = Linear::from_parts(weight, Some(bias.clone()));
    let x = matrix(2, 96, 19).reshape((1, 2, 96)).unwrap();
    let want = Q8Matrix::from_qtensor(&q8).unwrap().forward(&x).unwrap();
    let want = want.broadcast_add(&bias).unwrap();
    assert_eq!(bits(&linear.forward(&x).unwrap()), bits(&want));
    let q4 = Arc::new(QTensor::quantize(&matrix(8, 64, 20), GgmlDType::Q4_0).unwrap());
    let weight = LinearWeight::quantized(q4).unwrap();
    assert!(matches!(weight, LinearWeight::Quantized(_)), "{weight:?}");
}

/// The real SmolLM2 (Q4_1 re-quantized to Q8_0, so every projection and the
/// tied head run on `Q8Matrix`): rows of a forked batch equal batch-1 runs
/// exactly, as the decode-state contract requires.
#[test]
fn quantized_smollm2_fork_rows_equal_single_runs() {
    use ivg_models::{load_causal_lm, LoadOptions, LogitsSpan};
    let path = ivg_assets::ensure_default(ivg_assets::Asset::SmolLm2Gguf)
        .expect("asset available (run `ivg assets fetch`)");
    let model = load_causal_lm(&path, &LoadOptions::default()).expect("load");
    let prompt = vec![1u32, 504, 3458, 282, 4912];
    let conts: [[u32; 2]; 5] = [[30, 31], [260, 7], [12, 12], [1000, 3], [49000, 2]];
    let mut parent = model.new_state();
    model
        .prefill(std::slice::from_ref(&prompt), &mut parent, LogitsSpan::Last)
        .expect("prefill");
    let mut forked = parent.fork(conts.len()).expect("fork");
    let mut singles: Vec<_> = (0..conts.len()).map(|_| parent.clone()).collect();
    for step in 0..2 {
        let tokens: Vec<u32> = conts.iter().map(|c| c[step]).collect();
        let batch = model.step(&tokens, &mut forked).expect("batched step");
        for (row, state) in singles.iter_mut().enumerate() {
            let single = model.step(&[tokens[row]], state).expect("single step");
            assert_eq!(
                bits(&batch.get(row).unwrap()),
                bits(&single.get(0).unwrap()),
                "row {row} step {step}"
            );
        }
    }
}

/// Rows of different lengths, prefilled together (left-padded) or joining a
/// running batch, give bitwise the logits of each sequence decoded alone, on
/// the real quantized model and past 32 slots, where candle's SIMD softmax
/// sum would put a padded row's slots in other lanes than the row alone.
#[test]
fn quantized_smollm2_padded_and_joined_rows_equal_alone() {
    use ivg_models::{load_causal_lm, DecodeState, LoadOptions, LogitsSpan};
    let path = ivg_assets::ensure_default(ivg_assets::Asset::SmolLm2Gguf)
        .expect("asset available (run `ivg assets fetch`)");
    let model = load_causal_lm(&path, &LoadOptions::default()).expect("load");
    let prompt = |id: u32, len: u32| -> Vec<u32> {
        (0..len)
            .map(|j| 100 + (id * 997 + j * 131) % 40_000)
            .collect()
    };
    let token = |id: usize, step: usize| (500 + id * 37 + step * 53) as u32;
    let prompts = [prompt(0, 40), prompt(1, 75), prompt(2, 100)];
    let mut alone: Vec<(DecodeState, Tensor)> = prompts
        .iter()
        .map(|p| {
            let mut s = model.new_state();
            let l = model
                .prefill(std::slice::from_ref(p), &mut s, LogitsSpan::Last)
                .expect("alone prefill");
            (s, l)
        })
        .collect();
    let same = |batch: &Tensor, alone: &[(DecodeState, Tensor)], at: &str| {
        for (row, (_, l)) in alone.iter().enumerate() {
            assert_eq!(
                bits(&batch.get(row).unwrap()),
                bits(&l.get(0).unwrap()),
                "row {row} {at}"
            );
        }
    };
    // Sequences 0 and 1 prefilled together, left-padded.
    let mut batch = model.new_state();
    let logits = model
        .prefill(&prompts[..2], &mut batch, LogitsSpan::Last)
        .expect("padded prefill");
    same(&logits, &alone[..2], "after the padded prefill");
    let steps = |batch: &mut DecodeState, alone: &mut [(DecodeState, Tensor)], from, n| {
        for step in from..from + n {
            let tokens: Vec<u32> = (0..alone.len()).map(|id| token(id, step)).collect();
            let logits = model.step(&tokens, batch).expect("batch step");
            for ((s, l), &t) in alone.iter_mut().zip(&tokens) {
                *l = model.step(&[t], s).expect("alone step");
            }
            same(&logits, alone, &format!("step {step}"));
        }
    };
    steps(&mut batch, &mut alone[..2], 0, 3);
    // Sequence 2 (longer than the batch's slots) joins.
    let mut joining = model.new_state();
    model
        .prefill(&prompts[2..], &mut joining, LogitsSpan::Last)
        .expect("joining prefill");
    batch.append_rows(joining).expect("append rows");
    steps(&mut batch, &mut alone, 3, 3);
}

/// `QuantPolicy::Q8_0` on a dense model: every projection runs on the Q8_0
/// kernel, the logits stay within the quantization's error of the f32
/// model's (4.5% of the logits' spread measured on these random weights,
/// whose outliers quantize worse than a trained model's), and its argmax differs only
/// between tokens tied within that error.
#[test]
fn dense_model_quantized_at_load_tracks_f32() {
    use ivg_models::{CausalLm, LogitsSpan, QuantPolicy, Weights};
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 96, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": false
    });
    let (cfg, map, _) = common::random_tensors(config, 0.3);
    let load = |quant| {
        let w = Weights::from_tensors(map.clone(), "random", &Device::Cpu).with_quant(quant);
        CausalLm::load(&w, &cfg, "random").unwrap()
    };
    let (q8, dense) = (load(QuantPolicy::Q8_0), load(QuantPolicy::Keep));
    assert!(
        matches!(q8.head().proj().weight(), LinearWeight::Q8(_)),
        "the head is Q8_0"
    );
    assert!(
        matches!(dense.head().proj().weight(), LinearWeight::DenseT(_)),
        "Keep leaves f32"
    );
    let mut states = (q8.new_state(), dense.new_state());
    let prompt = vec![3u32, 14, 15, 92, 65, 35];
    let mut a = q8
        .prefill(
            std::slice::from_ref(&prompt),
            &mut states.0,
            LogitsSpan::Last,
        )
        .unwrap();
    let mut b = dense
        .prefill(
            std::slice::from_ref(&prompt),
            &mut states.1,
            LogitsSpan::Last,
        )
        .unwrap();
    let mut worst = 0f32;
    for _ in 0..12 {
        let (ra, rb) = (rows(&a).remove(0), rows(&b).remove(0));
        let spread = rb.iter().cloned().fold(f32::MIN, f32::max)
            - rb.iter().cloned().fold(f32::MAX, f32::min);
        let diff = ra
            .iter()
            .zip(&rb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        worst = worst.max(diff / spread);
        let best = |r: &[f32]| (0..r.len()).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap() as u32;
        // The argmax may change only between near-tied tokens.
        let next = best(&rb);
        let gap = rb[next as usize] - rb[best(&ra) as usize];
        assert!(
            gap <= 2.0 * diff,
            "Q8_0 picks a token {gap} below the f32 argmax (diff {diff})"
        );
        a = q8.step(&[next], &mut states.0).unwrap();
        b = dense.step(&[next], &mut states.1).unwrap();
    }
    eprintln!("Q8_0 at load vs f32: worst logit difference {worst:.4} of the spread");
    assert!(
        worst < 0.06,
        "Q8_0 logits differ from f32 by {worst} of their spread"
    );
}
