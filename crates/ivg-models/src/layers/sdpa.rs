//! Scaled dot-product attention on the CPU for inference, computed so that a
//! row's result does not depend on the batch it sits in.
//!
//! Why not candle's ops: a row that joins a batch is left-padded, and its
//! padded softmax and `probs x V` reduce over more slots than the same row
//! alone. candle's f32 sum assigns slots to SIMD lanes by index, so shifting a
//! row by its padding changes the rounding (seen as 1-ulp differences that Q8_0
//! activation quantization then amplifies into different sampled tokens).
//! Here each output `(row, head, query)` is a fixed sequence over that query's
//! unmasked keys only, in key order: a dot product per key with 8 lanes over
//! the head dimension (an order fixed by `head_dim` alone), the maximum, then
//! `exp`, the sum and `sum_j e_j v_j` key after key. Masked slots are skipped,
//! not added as zeros, so padding, batch size, tiling and thread count never
//! enter the result.
//!
//! It also drops the `repeat_kv` copy (a head reads its KV head directly) and
//! shares `(row, head)` units across rayon threads.

use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;

use crate::error::{ModelError, Result};

/// Lanes of the per-key dot product.
const LANES: usize = 8;
/// Fewest multiply-adds worth handing to more than one thread.
const PARALLEL_WORK: usize = 1 << 16;

/// Head layout of one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Heads {
    pub heads: usize,
    pub kv_heads: usize,
    pub scale: f32,
    pub softcap: Option<f32>,
}

/// Whether [`attend`] can run these inputs: f32 on the CPU.
pub(crate) fn supports(q: &Tensor) -> bool {
    q.device().is_cpu() && q.dtype() == DType::F32
}

/// `q: (b, heads, t, d)`, `k, v: (b, kv_heads, s, d)`, `mask: (b, 1, t | 1, s)`
/// additive (`-inf` = masked) -> `(b, t, heads * d)`, the layout the output
/// projection reads.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    shape: Heads,
) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let (kb, kvh, s, kd) = k.dims4()?;
    if (kb, kd) != (b, d) || v.dims() != k.dims() || h != shape.heads || kvh != shape.kv_heads {
        return Err(shape_error(q, k, v));
    }
    if kvh == 0 || h % kvh != 0 {
        return Err(shape_error(q, k, v));
    }
    let q = q.contiguous()?;
    let mask = match mask {
        Some(m) => Some(MaskView::new(m, b, t, s)?),
        None => None,
    };
    let dims = Dims { h, kvh, t, s, d };
    let out = with_slice(&q, |qs| {
        with_heads(k, |ks| {
            with_heads(v, |vs| match &mask {
                Some(m) => with_slice(&m.tensor, |ms| {
                    let m = Mask {
                        data: ms,
                        per_query: m.per_query,
                    };
                    Ok(run(
                        b,
                        Inputs {
                            dims,
                            qs,
                            ks,
                            vs,
                            mask: Some(m),
                            shape,
                        },
                    ))
                }),
                None => Ok(run(
                    b,
                    Inputs {
                        dims,
                        qs,
                        ks,
                        vs,
                        mask: None,
                        shape,
                    },
                )),
            })
        })
    })?;
    Ok(Tensor::from_vec(out, (b, t, h * d), &Device::Cpu)?)
}

#[derive(Clone, Copy)]
struct Dims {
    h: usize,
    kvh: usize,
    t: usize,
    s: usize,
    d: usize,
}

/// The mask tensor, checked and contiguous.
struct MaskView {
    tensor: Tensor,
    /// `true` for `(b, 1, t, s)`, `false` for one row of keys per batch row.
    per_query: bool,
}

impl MaskView {
    fn new(m: &Tensor, b: usize, t: usize, s: usize) -> Result<Self> {
        let per_query = match m.dims4()? {
            (mb, 1, mt, ms) if mb == b && ms == s && mt == t => true,
            (mb, 1, 1, ms) if mb == b && ms == s => false,
            _ => {
                return Err(ModelError::Unsupported(format!(
                    "attention mask of shape {:?} for {b} rows, {t} queries and {s} keys",
                    m.dims()
                )))
            }
        };
        let tensor = m.to_dtype(DType::F32)?.contiguous()?;
        Ok(Self { tensor, per_query })
    }
}

#[derive(Clone, Copy)]
struct Mask<'a> {
    data: &'a [f32],
    per_query: bool,
}

impl<'a> Mask<'a> {
    /// Additive values of `row`'s query `i` over all keys.
    fn keys(self, row: usize, i: usize, t: usize, s: usize) -> &'a [f32] {
        let at = if self.per_query { row * t + i } else { row };
        &self.data[at * s..(at + 1) * s]
    }
}

/// A `(b, heads, s, d)` CPU tensor whose `(s, d)` slices are contiguous,
/// as the views of a KV cache with spare slots are: rows and heads may be
/// strided.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    start: usize,
    row_stride: usize,
    head_stride: usize,
}

impl<'a> Strided<'a> {
    /// The `(len, d)` values of `row` and head `head`.
    fn span(self, row: usize, head: usize, len: usize) -> &'a [f32] {
        let at = self.start + row * self.row_stride + head * self.head_stride;
        &self.data[at..at + len]
    }
}

/// Borrows a CPU f32 `(b, heads, s, d)` tensor as [`Strided`] without copying
/// it, when its `(s, d)` slices are contiguous; otherwise copies it first.
fn with_heads<R>(t: &Tensor, f: impl FnOnce(Strided) -> Result<R>) -> Result<R> {
    let (_, _, s, d) = t.dims4()?;
    let stride = t.stride().to_vec();
    let dense = (s <= 1 || stride[2] == d) && (d <= 1 || stride[3] == 1);
    if !dense {
        return with_heads(&t.contiguous()?, f);
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(ModelError::Unsupported(format!(
            "CPU attention on a tensor on {:?}",
            t.device()
        )));
    };
    f(Strided {
        data: cpu.as_slice::<f32>()?,
        start: layout.start_offset(),
        row_stride: stride[0],
        head_stride: stride[1],
    })
}

/// Borrows a contiguous CPU f32 tensor's values without copying them.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(ModelError::Unsupported(format!(
            "CPU attention on a tensor on {:?}",
            t.device()
        )));
    };
    let data = cpu.as_slice::<f32>()?;
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(ModelError::State(
            "CPU attention on a non-contiguous tensor".into(),
        ));
    };
    f(&data[start..end])
}

fn shape_error(q: &Tensor, k: &Tensor, v: &Tensor) -> ModelError {
    ModelError::Unsupported(format!(
        "attention over q {:?}, k {:?}, v {:?}",
        q.dims(),
        k.dims(),
        v.dims()
    ))
}

/// Everything one `(row, head)` unit reads.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    dims: Dims,
    /// `(b, h, t, d)`, contiguous.
    qs: &'a [f32],
    ks: Strided<'a>,
    vs: Strided<'a>,
    mask: Option<Mask<'a>>,
    shape: Heads,
}

/// All `(row, head)` units, each on one thread, gathered into `(b, t, h * d)`.
fn run(b: usize, inputs: Inputs) -> Vec<f32> {
    let Dims { h, t, s, d, .. } = inputs.dims;
    let units = b * h;
    let avx2 = has_avx2();
    let unit = |u: usize| {
        let (row, hd) = (u / h, u % h);
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: `has_avx2` found the feature on this CPU.
            return unsafe { head_avx2(inputs, row, hd) };
        }
        head(inputs, row, hd, dot)
    };
    let work = units * t * s * d;
    let threads = rayon::current_num_threads();
    let per_unit: Vec<Vec<f32>> = if threads > 1 && units > 1 && work >= PARALLEL_WORK {
        (0..units).into_par_iter().map(unit).collect()
    } else {
        (0..units).map(unit).collect()
    };
    let mut out = vec![0f32; b * t * h * d];
    for (u, values) in per_unit.iter().enumerate() {
        let (row, hd) = (u / h, u % h);
        for (i, query) in values.chunks_exact(d).enumerate() {
            let at = ((row * t + i) * h + hd) * d;
            out[at..at + d].copy_from_slice(query);
        }
    }
    out
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`head`] compiled for AVX2: the same operations in the same order, on
/// 8-wide registers (no FMA, so the bits equal the portable build's).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn head_avx2(inputs: Inputs, row: usize, hd: usize) -> Vec<f32> {
    // SAFETY: the caller guarantees AVX2.
    head(inputs, row, hd, |a, b| unsafe { dot_avx2(a, b) })
}

/// One `(row, head)`: `(t, d)` outputs.
#[inline(always)]
fn head(inputs: Inputs, row: usize, hd: usize, dot: impl Fn(&[f32], &[f32]) -> f32) -> Vec<f32> {
    let Inputs {
        dims,
        qs,
        ks,
        vs,
        mask,
        shape,
    } = inputs;
    let Dims { h, kvh, t, s, d } = dims;
    let g = hd / (h / kvh);
    let q_at = (row * h + hd) * t * d;
    let keys = ks.span(row, g, s * d);
    let values = vs.span(row, g, s * d);
    let mut out = vec![0f32; t * d];
    let mut scores = Vec::with_capacity(s);
    for (i, o) in out.chunks_exact_mut(d).enumerate() {
        let query = &qs[q_at + i * d..q_at + (i + 1) * d];
        let additive = mask.map(|m| m.keys(row, i, t, s));
        scores.clear();
        for (j, key) in keys.chunks_exact(d).enumerate() {
            let add = additive.map_or(0.0, |a| a[j]);
            if add == f32::NEG_INFINITY {
                continue;
            }
            let mut sc = dot(query, key) * shape.scale;
            if let Some(cap) = shape.softcap {
                sc = (sc / cap).tanh() * cap;
            }
            scores.push((j, sc + add));
        }
        softmax_mix(&scores, values, d, o);
    }
    out
}

/// `o = sum_j softmax(scores)_j v_j`, key after key.
#[inline(always)]
fn softmax_mix(scores: &[(usize, f32)], values: &[f32], d: usize, o: &mut [f32]) {
    let max = scores
        .iter()
        .fold(f32::NEG_INFINITY, |m, &(_, sc)| m.max(sc));
    let mut sum = 0f32;
    for &(j, sc) in scores {
        let e = (sc - max).exp();
        sum += e;
        for (acc, &x) in o.iter_mut().zip(&values[j * d..(j + 1) * d]) {
            *acc += e * x;
        }
    }
    if sum > 0.0 {
        for acc in o.iter_mut() {
            *acc /= sum;
        }
    }
}

/// `sum_i a_i b_i` in 8 lanes (lane `i % 8`), then the lanes in a fixed tree
/// and the tail in order: the order depends on the length alone.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            lanes[l] += x[l] * y[l];
        }
    }
    let quads = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    ((quads[0] + quads[2]) + (quads[1] + quads[3])) + tail
}

/// [`dot`] on AVX2 registers: lane `l` of one register is lane `l` of
/// [`dot`]'s array, and the lanes and tail are combined in the same tree.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let body = n - n % LANES;
    let mut lanes = _mm256_setzero_ps();
    let mut i = 0;
    while i < body {
        // SAFETY: i + 8 <= body <= the length of both slices.
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(i)),
                _mm256_loadu_ps(b.as_ptr().add(i)),
            )
        };
        lanes = _mm256_add_ps(lanes, _mm256_mul_ps(x, y));
        i += LANES;
    }
    let tail: f32 = a[body..n].iter().zip(&b[body..n]).map(|(x, y)| x * y).sum();
    // quads[k] = lanes[k] + lanes[k + 4]
    let quads = _mm_add_ps(
        _mm256_castps256_ps128(lanes),
        _mm256_extractf128_ps::<1>(lanes),
    );
    // (quads[0] + quads[2], quads[1] + quads[3], ..)
    let pairs = _mm_add_ps(quads, _mm_movehl_ps(quads, quads));
    let total = _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)));
    total + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn tensor(shape: (usize, usize, usize, usize), seed: u32) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        Tensor::from_vec(values(n, seed), shape, &Device::Cpu).unwrap()
    }

    /// candle's ops over the same inputs (`repeat_kv`, matmul, softmax).
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, sh: Heads) -> Tensor {
        let rep = sh.heads / sh.kv_heads;
        let (b, kvh, s, d) = k.dims4().unwrap();
        let expand = |x: &Tensor| {
            x.unsqueeze(2)
                .unwrap()
                .expand((b, kvh, rep, s, d))
                .unwrap()
                .reshape((b, kvh * rep, s, d))
                .unwrap()
        };
        let (k, v) = (expand(k), expand(v));
        let mut scores = (q.matmul(&k.t().unwrap()).unwrap() * sh.scale as f64).unwrap();
        if let Some(m) = mask {
            scores = scores.broadcast_add(m).unwrap();
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let t = q.dim(2).unwrap();
        probs
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, t, sh.heads * d))
            .unwrap()
    }

    fn causal(b: usize, t: usize, s: usize, pads: &[usize]) -> Tensor {
        let mut m = vec![0f32; b * t * s];
        for r in 0..b {
            for i in 0..t {
                let q = s - t + i;
                for j in 0..s {
                    if !((j >= pads[r] && j <= q) || j == q) {
                        m[(r * t + i) * s + j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Tensor::from_vec(m, (b, 1, t, s), &Device::Cpu).unwrap()
    }

    const SHAPE: Heads = Heads {
        heads: 6,
        kv_heads: 2,
        scale: 0.125,
        softcap: None,
    };

    #[test]
    fn agrees_with_candle_ops() {
        let (b, t, s, d) = (3, 5, 41, 64);
        let q = tensor((b, 6, t, d), 1);
        let (k, v) = (tensor((b, 2, s, d), 2), tensor((b, 2, s, d), 3));
        let mask = causal(b, t, s, &[0, 7, 30]);
        for m in [None, Some(&mask)] {
            let ours = attend(&q, &k, &v, m, SHAPE).unwrap();
            let theirs = reference(&q, &k, &v, m, SHAPE);
            let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-6, "{diff}");
        }
    }

    /// A row left-padded by any amount, in a batch of any size, gives the bits
    /// of the same row alone.
    #[test]
    fn padded_rows_equal_the_row_alone() {
        let (t, s, d) = (1, 70, 64);
        let q = tensor((1, 6, t, d), 4);
        let (k, v) = (tensor((1, 2, s, d), 5), tensor((1, 2, s, d), 6));
        let alone = attend(&q, &k, &v, None, SHAPE).unwrap();
        for pad in [1, 3, 8, 33] {
            // Row 1 is the same sequence behind `pad` slots of noise.
            let noise = tensor((1, 2, pad, d), 7 + pad as u32);
            let shifted = |x: &Tensor| Tensor::cat(&[&noise, x], 2).unwrap();
            let other = |seed| tensor((1, 2, s + pad, d), seed);
            let k2 = Tensor::cat(&[&other(20), &shifted(&k)], 0).unwrap();
            let v2 = Tensor::cat(&[&other(21), &shifted(&v)], 0).unwrap();
            let q2 = Tensor::cat(&[&tensor((1, 6, t, d), 22), &q], 0).unwrap();
            let mask = causal(2, t, s + pad, &[0, pad]);
            let batch = attend(&q2, &k2, &v2, Some(&mask), SHAPE).unwrap();
            let row: Vec<f32> = batch
                .get(1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want: Vec<f32> = alone.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(
                row.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "pad {pad}"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_dot_equals_portable_dot() {
        if !has_avx2() {
            return;
        }
        for n in [0, 1, 7, 8, 9, 64, 80, 133] {
            let (a, b) = (values(n, n as u32 + 1), values(n, n as u32 + 50));
            // SAFETY: checked above.
            let fast = unsafe { dot_avx2(&a, &b) };
            assert_eq!(fast.to_bits(), dot(&a, &b).to_bits(), "length {n}");
        }
    }

    /// Keys and values read in place from a cache buffer with spare slots
    /// (a view narrowed along the slots) give the bits of a dense copy.
    #[test]
    fn strided_cache_views_equal_dense_copies() {
        let (b, t, s, d, cap) = (3, 2, 20, 64, 29);
        let q = tensor((b, 6, t, d), 8);
        let (kb, vb) = (tensor((b, 2, cap, d), 9), tensor((b, 2, cap, d), 10));
        let (k, v) = (kb.narrow(2, 4, s).unwrap(), vb.narrow(2, 4, s).unwrap());
        assert!(!k.is_contiguous());
        let mask = causal(b, t, s, &[0, 3, 11]);
        let views = attend(&q, &k, &v, Some(&mask), SHAPE).unwrap();
        let (kc, vc) = (k.contiguous().unwrap(), v.contiguous().unwrap());
        let dense = attend(&q, &kc, &vc, Some(&mask), SHAPE).unwrap();
        let bits = |x: &Tensor| -> Vec<u32> {
            let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            v.iter().map(|f| f.to_bits()).collect()
        };
        assert_eq!(bits(&views), bits(&dense));
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let q = tensor((1, 6, 1, 64), 1);
        let k = tensor((1, 4, 9, 64), 2);
        let err = attend(&q, &k, &k, None, SHAPE).unwrap_err().to_string();
        assert!(err.contains("[1, 4, 9, 64]"), "{err}");
        let k = tensor((1, 2, 9, 64), 2);
        let bad_mask = Tensor::zeros((1, 1, 1, 8), DType::F32, &Device::Cpu).unwrap();
        let err = attend(&q, &k, &k, Some(&bad_mask), SHAPE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mask of shape [1, 1, 1, 8]"), "{err}");
    }
}
