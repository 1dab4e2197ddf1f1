//! Q8_0 weight x f32 activation matmul for the CPU, batched so that each
//! weight block is read from memory once per call whatever the batch size.
//!
//! Quantization follows ggml / candle: activations are quantized per
//! 32-element block to Q8_0 (`d = max|x| / 127`, `q = round(x * (1 / d))`, `d`
//! stored as f16; candle `BlockQ8_0::from_float`), and an output is
//! `sum_b d_w[b] * d_x[b] * sum_i w[b][i] * x[b][i]` as in llama.cpp's
//! `ggml_vec_dot_q8_0_q8_0`
//! (<https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-cpu/arch/x86/quants.c>).
//!
//! Order of operations (every kernel, bit for bit): the integer sum of a
//! block is exact (i32), then `acc = fma(d_w[b] * d_x[b], sum_b as f32, acc)`
//! over the blocks in order, from `acc = 0`. Only the integer part differs
//! between kernels, and integer addition is exact in any order, so the
//! portable kernel, AVX2 and the VNNI kernels give the same bits. (This is
//! not candle's order, which sums eight partial lanes per row; results agree
//! with candle to float rounding.)
//!
//! Layout: weight rows are interleaved in groups of 8, in the manner of
//! llama.cpp's repacked CPU layouts (`ggml-cpu/repack.cpp`): for a group and a block, 32-byte lane `j` holds
//! bytes `4j..4j+4` of each of the 8 rows. One `vpdpbusd` of a lane with a
//! broadcast of 4 activation bytes adds 4 products to each of the group's 8
//! outputs, and the 8 outputs come out in one register without horizontal
//! sums. `vpdpbusd` multiplies unsigned by signed bytes, so the weights are
//! stored as `w + 128` and each activation block carries `-128 * sum(x)` to
//! start its sums from. Scales stay f16 (34 bytes per 32 weights, as ggml).
//! Weight rows are the outer loop and activation rows (tiles of 4) the inner
//! one, so a group's weights are read from memory once per call.
//!
//! Row invariance: output `(r, o)` is computed by the sequence above over
//! activation row `r` and weight row `o` alone; the batch size, the tiling of
//! activation rows and the thread count do not enter it. A row of a batched
//! call is therefore bit-identical to a one-row call, which forked decode
//! states rely on.

use std::fmt;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use half::f16;
use rayon::prelude::*;

use crate::error::{ModelError, Result};

/// Elements per Q8_0 block.
pub const Q8_BLOCK: usize = 32;
/// Bytes per ggml `block_q8_0`: f16 scale then 32 signed quants.
const GGML_BLOCK_BYTES: usize = 2 + Q8_BLOCK;
/// Weight rows interleaved in one group: one 256-bit register of outputs.
const GROUP: usize = 8;
/// 4-byte words per block.
const WORDS: usize = Q8_BLOCK / 4;
/// Activation rows sharing one pass over a weight group.
const ROW_TILE: usize = 4;
/// Activation blocks quantized by one rayon task.
const QUANT_SPAN: usize = 256;
/// Fewest weight groups given to one rayon task.
const MIN_GROUPS_PER_TASK: usize = 4;

/// 32 bytes aligned so that one aligned 256-bit load reads them.
#[repr(C, align(32))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lane32([u8; 32]);

/// The packed weight: `groups = ceil(rows / 8)`, `nb = cols / 32`; rows past
/// `rows` are zero.
#[derive(Clone, Debug, PartialEq)]
struct Packed {
    /// `(groups, nb, 8 words)`: `quants[(g * nb + b) * 8 + j]` holds bytes
    /// `4j..4j+4` of block `b` of rows `8g..8g+8`, row after row, each stored
    /// as `w + 128` (`w ^ 0x80`): `vpdpbusd` wants its first factor unsigned.
    quants: Vec<Lane32>,
    /// `(groups, nb)`: the 8 rows' block scales, as stored in the GGUF.
    scales: Vec<[f16; GROUP]>,
}

/// Quantized activations, `(m, nb)` blocks.
#[derive(Clone, Debug, PartialEq)]
struct Activations {
    /// Signed quants as 8 little-endian 4-byte words.
    words: Vec<[i32; WORDS]>,
    scales: Vec<f32>,
    /// `-128 * sum(quants)`: undoes the `+128` of the weights, so that
    /// `offset + sum((w + 128) * x) = sum(w * x)`.
    offsets: Vec<i32>,
}

/// The kernel computing the block sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Q8Kernel {
    /// Portable Rust.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C (`vpmaddubsw` with the sign trick).
    Avx2,
    /// AVX-VNNI `vpdpbusd` on 256-bit registers.
    AvxVnni,
    /// AVX-512 VNNI + VL `vpdpbusd` on 256-bit registers (32 of them).
    Avx512Vnni,
}

impl Q8Kernel {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        [Self::Avx512Vnni, Self::AvxVnni, Self::Avx2]
            .into_iter()
            .find(|k| k.is_available())
            .unwrap_or(Self::Scalar)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        self.dispatch().is_some()
    }

    /// Every kernel this CPU runs.
    pub fn available() -> Vec<Self> {
        [Self::Scalar, Self::Avx2, Self::AvxVnni, Self::Avx512Vnni]
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    fn dispatch(self) -> Option<Dispatch> {
        match self {
            Self::Scalar => Some(Dispatch::Scalar),
            _ => CpuToken::detect(self).map(|t| Dispatch::Simd(self, t)),
        }
    }
}

/// Proof that the running CPU has the features of a SIMD kernel: only
/// [`CpuToken::detect`] makes one, so holding it is the safety argument of
/// every call into `simd`.
#[derive(Clone, Copy, Debug)]
struct CpuToken(());

impl CpuToken {
    fn detect(kernel: Q8Kernel) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            let ok = avx2
                && match kernel {
                    Q8Kernel::Scalar | Q8Kernel::Avx2 => true,
                    Q8Kernel::AvxVnni => is_x86_feature_detected!("avxvnni"),
                    Q8Kernel::Avx512Vnni => {
                        is_x86_feature_detected!("avx512vnni")
                            && is_x86_feature_detected!("avx512vl")
                    }
                };
            if ok {
                return Some(Self(()));
            }
        }
        let _ = kernel;
        None
    }
}

#[derive(Clone, Copy, Debug)]
enum Dispatch {
    Scalar,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Simd(Q8Kernel, CpuToken),
}

/// A Q8_0 weight matrix `(rows = out, cols = in)` in an interleaved,
/// SIMD-friendly layout. Cloning shares the data.
#[derive(Clone)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    packed: Arc<Packed>,
}

impl fmt::Debug for Q8Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Q8Matrix({} x {})", self.rows, self.cols)
    }
}

impl Q8Matrix {
    /// Copies a 2-D `Q8_0` [`QTensor`] `(out, in)` out of ggml's 34-byte blocks.
    pub fn from_qtensor(q: &QTensor) -> Result<Self> {
        let dims = q.shape().dims().to_vec();
        if q.dtype() != GgmlDType::Q8_0 {
            return Err(unsupported(&dims, &format!("{:?} is not Q8_0", q.dtype())));
        }
        let (rows, cols) = matrix_dims(&dims)?;
        let raw = q.data()?;
        let expected = rows * cols / Q8_BLOCK * GGML_BLOCK_BYTES;
        if raw.len() != expected {
            let why = format!("{} bytes of data, expected {expected}", raw.len());
            return Err(unsupported(&dims, &why));
        }
        let blocks: Vec<_> = raw
            .chunks_exact(GGML_BLOCK_BYTES)
            .map(|ggml| {
                let quants: [i8; Q8_BLOCK] = std::array::from_fn(|i| ggml[2 + i] as i8);
                (quants, f16::from_le_bytes([ggml[0], ggml[1]]))
            })
            .collect();
        Ok(Self::pack(rows, cols, &blocks))
    }

    /// Quantizes an f32 matrix `(out, in)` to Q8_0 by the activations' rule.
    pub fn quantize(weight: &Tensor) -> Result<Self> {
        let (rows, cols) = matrix_dims(weight.dims())?;
        let values = weight
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let blocks: Vec<_> = values
            .chunks_exact(Q8_BLOCK)
            .map(|chunk| quantize_block(&block_of(chunk)))
            .collect();
        Ok(Self::pack(rows, cols, &blocks))
    }

    /// Interleaves row-major blocks `(rows, cols / 32)` into groups of 8 rows.
    fn pack(rows: usize, cols: usize, blocks: &[([i8; Q8_BLOCK], f16)]) -> Self {
        let nb = cols / Q8_BLOCK;
        let groups = rows.div_ceil(GROUP);
        let mut quants = vec![Lane32([0x80; 32]); groups * nb * WORDS];
        let mut scales = vec![[f16::ZERO; GROUP]; groups * nb];
        for (i, (block, scale)) in blocks.iter().enumerate() {
            let (row, b) = (i / nb, i % nb);
            let (g, l) = (row / GROUP, row % GROUP);
            scales[g * nb + b][l] = *scale;
            for (j, word) in block.chunks_exact(4).enumerate() {
                let lane = &mut quants[(g * nb + b) * WORDS + j].0[4 * l..4 * l + 4];
                for (dst, &q) in lane.iter_mut().zip(word) {
                    *dst = q as u8 ^ 0x80;
                }
            }
        }
        let packed = Arc::new(Packed { quants, scales });
        Self { rows, cols, packed }
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `xs: (..., in)` f32 on the CPU -> `(..., out)`, with the fastest kernel.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_with(xs, Q8Kernel::detect())
    }

    /// [`Q8Matrix::forward`] with a chosen kernel (tests compare them).
    pub fn forward_with(&self, xs: &Tensor, kernel: Q8Kernel) -> Result<Tensor> {
        let Some(dispatch) = kernel.dispatch() else {
            return Err(ModelError::Unsupported(format!(
                "Q8_0 matmul: this CPU cannot run the {kernel:?} kernel"
            )));
        };
        let dims = xs.dims().to_vec();
        if dims.last() != Some(&self.cols) {
            return Err(ModelError::Unsupported(format!(
                "Q8_0 matmul: input of shape {dims:?} does not end in the {} input features \
                 of the ({}, {}) weight",
                self.cols, self.rows, self.cols
            )));
        }
        if !xs.device().is_cpu() || xs.dtype() != DType::F32 {
            return Err(ModelError::Unsupported(format!(
                "Q8_0 matmul: input of shape {dims:?} is {:?} on {:?}, expected f32 on the CPU",
                xs.dtype(),
                xs.device()
            )));
        }
        let values = xs.flatten_all()?.to_vec1::<f32>()?;
        let threads = rayon::current_num_threads();
        let m: usize = dims[..dims.len() - 1].iter().product();
        let ys = self.matmul(&values, m, dispatch, threads);
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.rows;
        }
        Ok(Tensor::from_vec(ys, out_dims, &Device::Cpu)?)
    }

    /// `xs: (m, cols)` row-major -> `(m, rows)` row-major. With `threads > 1`
    /// the weight groups are shared out in rayon tasks; each output is still
    /// computed whole by one task, so the result does not depend on `threads`.
    fn matmul(&self, xs: &[f32], m: usize, dispatch: Dispatch, threads: usize) -> Vec<f32> {
        let groups = self.rows.div_ceil(GROUP);
        if m == 0 || groups == 0 || self.cols == 0 {
            return vec![0f32; m * self.rows];
        }
        let acts = quantize_rows(xs, dispatch, threads);
        // (groups, m, 8): a task owns whole groups, so it reads its share of
        // the weights once and writes one contiguous slice.
        let mut by_group = vec![0f32; groups * m * GROUP];
        let per_task = groups.div_ceil(threads.max(1) * 4).max(MIN_GROUPS_PER_TASK);
        if threads > 1 && groups > per_task {
            by_group
                .par_chunks_mut(per_task * m * GROUP)
                .enumerate()
                .for_each(|(task, out)| self.groups_into(task * per_task, out, &acts, m, dispatch));
        } else {
            self.groups_into(0, &mut by_group, &acts, m, dispatch);
        }
        let mut ys = vec![0f32; m * self.rows];
        for (g, block) in by_group.chunks_exact(m * GROUP).enumerate() {
            let width = GROUP.min(self.rows - g * GROUP);
            for (r, lanes) in block.chunks_exact(GROUP).enumerate() {
                let at = r * self.rows + g * GROUP;
                ys[at..at + width].copy_from_slice(&lanes[..width]);
            }
        }
        ys
    }

    /// Groups `first..` against all `m` activation rows into `out: (n, m, 8)`.
    fn groups_into(
        &self,
        first: usize,
        out: &mut [f32],
        acts: &Activations,
        m: usize,
        d: Dispatch,
    ) {
        let nb = self.cols / Q8_BLOCK;
        let p = &self.packed;
        for (i, out_group) in out.chunks_exact_mut(m * GROUP).enumerate() {
            let gb = (first + i) * nb..(first + i + 1) * nb;
            let w = Weights {
                quants: &p.quants[gb.start * WORDS..gb.end * WORDS],
                scales: &p.scales[gb],
            };
            let mut r = 0;
            while r < m {
                let n = ROW_TILE.min(m - r);
                let dst = &mut out_group[r * GROUP..(r + n) * GROUP];
                match n {
                    4 => put(dst, group_tile(d, &w, acts.tile::<4>(r, nb))),
                    3 => put(dst, group_tile(d, &w, acts.tile::<3>(r, nb))),
                    2 => put(dst, group_tile(d, &w, acts.tile::<2>(r, nb))),
                    _ => put(dst, group_tile(d, &w, acts.tile::<1>(r, nb))),
                }
                r += n;
            }
        }
    }
}

/// One group's weights, `nb` blocks.
struct Weights<'a> {
    quants: &'a [Lane32],
    scales: &'a [[f16; GROUP]],
}

/// One activation row's blocks, `nb` of each.
#[derive(Clone, Copy)]
struct ActRow<'a> {
    words: &'a [[i32; WORDS]],
    scales: &'a [f32],
    offsets: &'a [i32],
}

impl Activations {
    fn tile<const R: usize>(&self, first: usize, nb: usize) -> [ActRow<'_>; R] {
        std::array::from_fn(|i| {
            let span = (first + i) * nb..(first + i + 1) * nb;
            ActRow {
                words: &self.words[span.clone()],
                scales: &self.scales[span.clone()],
                offsets: &self.offsets[span],
            }
        })
    }
}

fn put<const R: usize>(dst: &mut [f32], ys: [[f32; GROUP]; R]) {
    for (d, y) in dst.chunks_exact_mut(GROUP).zip(&ys) {
        d.copy_from_slice(y);
    }
}

fn matrix_dims(dims: &[usize]) -> Result<(usize, usize)> {
    let [rows, cols] = dims[..] else {
        return Err(unsupported(dims, "not a matrix"));
    };
    if cols % Q8_BLOCK != 0 {
        let why = format!("the input dimension {cols} is not a multiple of {Q8_BLOCK}");
        return Err(unsupported(dims, &why));
    }
    Ok((rows, cols))
}

fn unsupported(dims: &[usize], why: &str) -> ModelError {
    ModelError::Unsupported(format!("Q8_0 matrix of shape {dims:?}: {why}"))
}

/// The 8 outputs of one weight group for `R` activation rows.
fn group_tile<const R: usize>(d: Dispatch, w: &Weights, xs: [ActRow; R]) -> [[f32; GROUP]; R] {
    match d {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU has the kernel's features.
        Dispatch::Simd(kernel, _) => unsafe { simd::group_tile(kernel, w, xs) },
        _ => group_tile_scalar(w, xs),
    }
}

/// The reference order: exact block sums, then one fused multiply-add per block.
fn group_tile_scalar<const R: usize>(w: &Weights, xs: [ActRow; R]) -> [[f32; GROUP]; R] {
    let mut acc = [[0f32; GROUP]; R];
    for (b, dw) in w.scales.iter().enumerate() {
        let lanes = &w.quants[b * WORDS..(b + 1) * WORDS];
        for (out, x) in acc.iter_mut().zip(&xs) {
            for (l, y) in out.iter_mut().enumerate() {
                let mut sum = 0i32;
                for (lane, word) in lanes.iter().zip(x.words[b]) {
                    for (k, xq) in word.to_le_bytes().into_iter().enumerate() {
                        let wq = (lane.0[4 * l + k] ^ 0x80) as i8;
                        sum += i32::from(wq) * i32::from(xq as i8);
                    }
                }
                *y = (dw[l].to_f32() * x.scales[b]).mul_add(sum as f32, *y);
            }
        }
    }
    acc
}

/// Quantizes `(m, cols)` f32 values block by block. With `threads > 1` and
/// enough blocks, spans of blocks go to rayon tasks; every block is quantized
/// alone, so the split changes no bit.
fn quantize_rows(xs: &[f32], d: Dispatch, threads: usize) -> Activations {
    let n = xs.len() / Q8_BLOCK;
    let mut acts = Activations {
        words: vec![[0; WORDS]; n],
        scales: vec![0.0; n],
        offsets: vec![0; n],
    };
    if threads > 1 && n >= 2 * QUANT_SPAN {
        xs.par_chunks(QUANT_SPAN * Q8_BLOCK)
            .zip(acts.words.par_chunks_mut(QUANT_SPAN))
            .zip(acts.scales.par_chunks_mut(QUANT_SPAN))
            .zip(acts.offsets.par_chunks_mut(QUANT_SPAN))
            .for_each(|(((x, w), s), o)| quantize_span(x, w, s, o, d));
    } else {
        quantize_span(xs, &mut acts.words, &mut acts.scales, &mut acts.offsets, d);
    }
    acts
}

/// Quantizes the blocks of `xs` into the same number of `words`, `scales`
/// and `offsets`.
fn quantize_span(
    xs: &[f32],
    words: &mut [[i32; WORDS]],
    scales: &mut [f32],
    offsets: &mut [i32],
    d: Dispatch,
) {
    match d {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves the CPU has avx2, fma and f16c.
        Dispatch::Simd(..) => unsafe { simd::quantize_span(xs, words, scales, offsets) },
        _ => {
            let blocks = xs
                .chunks_exact(Q8_BLOCK)
                .map(|c| quantize_block(&block_of(c)));
            for (i, block) in blocks.enumerate() {
                store_block(block, &mut words[i], &mut scales[i], &mut offsets[i]);
            }
        }
    }
}

/// One quantized block in the activations' form.
#[inline(always)]
fn store_block(
    (quants, scale): ([i8; Q8_BLOCK], f16),
    words: &mut [i32; WORDS],
    dx: &mut f32,
    offset: &mut i32,
) {
    *words = std::array::from_fn(|j| {
        let q = &quants[4 * j..4 * j + 4];
        i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
    });
    *dx = scale.to_f32();
    *offset = -128 * quants.iter().map(|&q| i32::from(q)).sum::<i32>();
}

fn block_of(chunk: &[f32]) -> [f32; Q8_BLOCK] {
    std::array::from_fn(|i| chunk[i])
}

/// candle's `BlockQ8_0::from_float`: the quants use the unrounded scale,
/// which is then stored as f16.
fn quantize_block(xs: &[f32; Q8_BLOCK]) -> ([i8; Q8_BLOCK], f16) {
    let amax = xs.iter().fold(0f32, |m, x| m.max(x.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (xs.map(|x| (x * id).round() as i8), f16::from_f32(d))
}

/// The x86-64 kernels. Each `#[target_feature]` function may only be called
/// on a CPU with those features; callers hold a `CpuToken` that proves it.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{block_of, store_block, ActRow, Lane32, Q8Kernel, Weights, GROUP, Q8_BLOCK, WORDS};

    /// # Safety
    /// The CPU must have the features of `kernel` (AVX2, FMA and F16C at least).
    pub(super) unsafe fn group_tile<const R: usize>(
        kernel: Q8Kernel,
        w: &Weights,
        xs: [ActRow; R],
    ) -> [[f32; GROUP]; R] {
        // SAFETY: forwarded from the caller.
        unsafe {
            match kernel {
                Q8Kernel::Avx512Vnni => tile_avx512vnni(w, xs),
                Q8Kernel::AvxVnni => tile_avxvnni(w, xs),
                Q8Kernel::Avx2 | Q8Kernel::Scalar => tile_avx2(w, xs),
            }
        }
    }

    #[target_feature(enable = "avx2")]
    fn load(lane: &Lane32) -> __m256i {
        // SAFETY: a `Lane32` is 32 bytes aligned to 32: one aligned load.
        unsafe { _mm256_load_si256(lane.0.as_ptr().cast()) }
    }

    /// `acc + (d_w * d_x) * sums`, one rounding for the multiply-add.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn scale_add(acc: __m256, dw: &[f16; GROUP], dx: f32, sums: __m256i) -> __m256 {
        // SAFETY: 8 readable f16 = 16 bytes; the load is unaligned.
        let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(dw.as_ptr().cast()) });
        let d = _mm256_mul_ps(dw, _mm256_set1_ps(dx));
        _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sums), acc)
    }

    #[target_feature(enable = "avx2")]
    fn store<const R: usize>(acc: [__m256; R]) -> [[f32; GROUP]; R] {
        acc.map(|a| {
            let mut out = [0f32; GROUP];
            // SAFETY: 8 writable f32; the store is unaligned.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
            out
        })
    }

    /// AVX2 block sums: `|w| * (x with the sign of w)` by `vpmaddubsw`,
    /// widened by `vpmaddwd`. `|w| <= 128` and `|x| <= 127`, so no pair sum
    /// saturates and the sums are exact.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn tile_avx2<const R: usize>(w: &Weights, xs: [ActRow; R]) -> [[f32; GROUP]; R] {
        let nb = w.scales.len();
        let xs = xs.map(|x| (&x.words[..nb], &x.scales[..nb]));
        let (ones, flip) = (_mm256_set1_epi16(1), _mm256_set1_epi8(i8::MIN));
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, (lanes, dw)) in w.quants.chunks_exact(WORDS).zip(w.scales).enumerate() {
            let mut sums = [_mm256_setzero_si256(); R];
            for (j, lane) in lanes.iter().enumerate() {
                let wq = _mm256_xor_si256(load(lane), flip);
                let w_abs = _mm256_sign_epi8(wq, wq);
                for (s, x) in sums.iter_mut().zip(&xs) {
                    let x_signed = _mm256_sign_epi8(_mm256_set1_epi32(x.0[b][j]), wq);
                    let pairs = _mm256_maddubs_epi16(w_abs, x_signed);
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(pairs, ones));
                }
            }
            for ((a, x), s) in acc.iter_mut().zip(&xs).zip(sums) {
                *a = scale_add(*a, dw, x.1[b], s);
            }
        }
        store(acc)
    }

    /// VNNI block sums: `vpdpbusd` of the unsigned stored weights (`w + 128`)
    /// with the signed activations, started from `-128 * sum(x)`. Exact in i32.
    macro_rules! vnni_tile {
        ($name:ident, $features:literal, $dpbusd:ident) => {
            #[target_feature(enable = $features)]
            fn $name<const R: usize>(w: &Weights, xs: [ActRow; R]) -> [[f32; GROUP]; R] {
                let nb = w.scales.len();
                let xs = xs.map(|x| (&x.words[..nb], &x.scales[..nb], &x.offsets[..nb]));
                let mut acc = [_mm256_setzero_ps(); R];
                for (b, (lanes, dw)) in w.quants.chunks_exact(WORDS).zip(w.scales).enumerate() {
                    let mut sums = xs.map(|x| _mm256_set1_epi32(x.2[b]));
                    for (j, lane) in lanes.iter().enumerate() {
                        let wu = load(lane);
                        for (s, x) in sums.iter_mut().zip(&xs) {
                            *s = $dpbusd(*s, wu, _mm256_set1_epi32(x.0[b][j]));
                        }
                    }
                    for ((a, x), s) in acc.iter_mut().zip(&xs).zip(sums) {
                        *a = scale_add(*a, dw, x.1[b], s);
                    }
                }
                store(acc)
            }
        };
    }

    vnni_tile!(
        tile_avxvnni,
        "avx2,fma,f16c,avxvnni",
        _mm256_dpbusd_avx_epi32
    );
    vnni_tile!(
        tile_avx512vnni,
        "avx2,fma,f16c,avx512vnni,avx512vl",
        _mm256_dpbusd_epi32
    );

    /// [`super::quantize_span`] with [`quantize_block`] inlined.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn quantize_span(
        xs: &[f32],
        words: &mut [[i32; WORDS]],
        scales: &mut [f32],
        offsets: &mut [i32],
    ) {
        let blocks = xs.chunks_exact(Q8_BLOCK).zip(words.iter_mut());
        for ((chunk, w), (s, o)) in blocks.zip(scales.iter_mut().zip(offsets.iter_mut())) {
            store_block(quantize_block(&block_of(chunk)), w, s, o);
        }
    }

    /// See [`super::quantize_block`]; the same bits. `f32::round` (half away
    /// from zero) is `trunc(v + copysign(0.5 - 2^-25, v))`, LLVM's own
    /// lowering; `vcvtps2ph` rounds to nearest even as `f16::from_f32` does.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn quantize_block(xs: &[f32; Q8_BLOCK]) -> ([i8; Q8_BLOCK], f16) {
        // SAFETY: loads of 8 f32 at offsets 0, 8, 16, 24 of a 32-f32 array.
        let v: [__m256; 4] =
            std::array::from_fn(|i| unsafe { _mm256_loadu_ps(xs.as_ptr().add(8 * i)) });
        let sign = _mm256_set1_ps(-0.0);
        let abs_max = v.iter().fold(_mm256_setzero_ps(), |m, &x| {
            _mm256_max_ps(m, _mm256_andnot_ps(sign, x))
        });
        let half_max = _mm_max_ps(
            _mm256_castps256_ps128(abs_max),
            _mm256_extractf128_ps::<1>(abs_max),
        );
        let pair_max = _mm_max_ps(half_max, _mm_movehl_ps(half_max, half_max));
        let amax = _mm_cvtss_f32(_mm_max_ss(pair_max, _mm_movehdup_ps(pair_max)));
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
        let half = _mm256_set1_ps(0.5 - f32::EPSILON / 4.0);
        let ints = v.map(|x| {
            let s = _mm256_mul_ps(x, id);
            let biased = _mm256_add_ps(s, _mm256_or_ps(half, _mm256_and_ps(s, sign)));
            _mm256_cvttps_epi32(biased)
        });
        // The packs interleave 128-bit halves; the permute restores the order.
        let lo = _mm256_packs_epi32(ints[0], ints[1]);
        let hi = _mm256_packs_epi32(ints[2], ints[3]);
        let bytes = _mm256_packs_epi16(lo, hi);
        let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        let mut out = Lane32([0; Q8_BLOCK]);
        // SAFETY: a `Lane32` is 32 bytes aligned to 32: one aligned store.
        unsafe { _mm256_store_si256(out.0.as_mut_ptr().cast(), ordered) };
        let d_half = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(d));
        let d_bits = _mm_extract_epi16::<0>(d_half) as u16;
        (out.0.map(|b| b as i8), f16::from_bits(d_bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-scale, scale), a different scale per block.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let unit = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                unit * (1 + (i / Q8_BLOCK) % 5) as f32
            })
            .collect()
    }

    #[test]
    fn scalar_quantization_rounds_half_away_from_zero() {
        let mut xs = [0f32; Q8_BLOCK];
        xs[..6].copy_from_slice(&[127.0, 2.5, -3.5, 0.5, -0.5, 126.5]);
        let (q, d) = quantize_block(&xs);
        assert_eq!(d.to_f32(), 1.0);
        assert_eq!(&q[..6], &[127, 3, -4, 1, -1, 127]);
        assert!(q[6..].iter().all(|&v| v == 0));
        assert_eq!(quantize_block(&[0.0; Q8_BLOCK]), ([0; Q8_BLOCK], f16::ZERO));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_quantization_equals_scalar() {
        let Some(Dispatch::Simd(..)) = Q8Kernel::Avx2.dispatch() else {
            return;
        };
        let mut blocks: Vec<[f32; Q8_BLOCK]> = values(Q8_BLOCK * 200, 7)
            .chunks_exact(Q8_BLOCK)
            .map(block_of)
            .collect();
        // Exact ties after scaling by 1/d = 1 (amax 127) and by 2 (amax 63.5).
        blocks.push(std::array::from_fn(|i| {
            if i == 0 {
                127.0
            } else {
                i as f32 - 15.5
            }
        }));
        blocks.push(std::array::from_fn(|i| {
            if i == 0 {
                -63.5
            } else {
                (i as f32 - 16.0) * 0.25
            }
        }));
        blocks.push([0.0; Q8_BLOCK]);
        // Scales that are subnormal in f16, and one that rounds to zero.
        blocks.push(std::array::from_fn(|i| (i as f32 - 16.0) * 3e-7));
        blocks.push(std::array::from_fn(|i| (i as f32 - 16.0) * 1e-10));
        for block in &blocks {
            // SAFETY: dispatch() found avx2, fma and f16c.
            let simd = unsafe { simd::quantize_block(block) };
            assert_eq!(simd, quantize_block(block), "block {block:?}");
        }
    }

    #[test]
    fn pack_places_row_bytes_and_scales() {
        // 11 rows (two groups, the second padded), 2 blocks; row r, column c
        // holds (r * 7 + c) % 101 - 50 with an exactly representable scale.
        let (rows, cols) = (11, 64);
        let blocks: Vec<_> = (0..rows * 2)
            .map(|i| {
                let (r, b) = (i / 2, i % 2);
                let q = std::array::from_fn(|k| ((r * 7 + b * 32 + k) % 101) as i8 - 50);
                (q, f16::from_f32(0.5 + r as f32))
            })
            .collect();
        let m = Q8Matrix::pack(rows, cols, &blocks);
        let p = &m.packed;
        assert_eq!((p.quants.len(), p.scales.len()), (2 * 2 * WORDS, 2 * 2));
        // Row 9 = group 1, lane 1; block 1; bytes 8..12 are word 2.
        let lane = &p.quants[(2 + 1) * WORDS + 2].0[4..8];
        let expect: Vec<u8> = (8..12)
            .map(|k| (((9 * 7 + 32 + k) % 101) as i8 - 50) as u8 ^ 0x80)
            .collect();
        assert_eq!(lane, &expect[..]);
        assert_eq!(p.scales[2 + 1][1].to_f32(), 9.5);
        // Padding rows 11..16 are zero weights with zero scales.
        assert!(p.quants[3 * WORDS].0[12..].iter().all(|&b| b == 0x80));
        assert!(p.scales[3][3..].iter().all(|s| s.to_f32() == 0.0));
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let (rows, cols, m) = (203, 96, 5);
        let w = Tensor::from_vec(values(rows * cols, 1), (rows, cols), &Device::Cpu).unwrap();
        let q = Q8Matrix::quantize(&w).unwrap();
        let xs = values(m * cols, 2);
        let d = Q8Kernel::detect().dispatch().unwrap();
        let one = q.matmul(&xs, m, d, 1);
        assert_eq!(one.len(), m * rows);
        for threads in [2, 3, 8] {
            assert_eq!(q.matmul(&xs, m, d, threads), one, "{threads} threads");
        }
    }
}
