//! Per-sequence decoding state kept outside the model, so beams share weights
//! and the decoder can fork, reorder and truncate rows (architecture.md, practice 5),
//! and so requests can join a running batch (`append_rows`) and leave it
//! (`reorder`, then `trim_padding`).
//!
//! Keys and values are stored per layer as `(rows, kv_heads, len, head_dim)`.
//! Every operation builds new tensors (`cat`, `index_select`, `narrow`) and candle
//! tensors are never written in place here, so a fork never aliases its parent:
//! appending to one row set cannot change another. (candle's preallocated
//! `KvCache` writes into a shared buffer and would alias on clone.)
//!
//! Rows of a batch may start with left padding (`pads[row]` slots); padded slots
//! are masked out and do not count toward positions.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::error::{ModelError, Result};

/// Cached keys and values of one layer, `(rows, kv_heads, len, head_dim)` each.
#[derive(Clone, Debug)]
pub struct LayerKv {
    pub k: Tensor,
    pub v: Tensor,
}

/// Fewest spare slots a cache buffer is given when it grows.
const SPARE_SLOTS: usize = 32;

/// One layer's cache: buffers with spare slots past the live ones, so that a
/// decode step writes its new slot in place instead of copying the whole
/// cache (a `cat` per layer per step was 7% of a batch-16 SmolLM2 step at 150
/// slots, and it grows with the length).
///
/// In-place writes stay invisible to everyone else: they happen only while no
/// clone of the state shares the buffers (`owner` is unique: copy on write),
/// and only past `written`, the end of every slot ever written, so no view
/// handed out earlier (which ends at or before `written`) changes.
#[derive(Clone, Debug)]
struct LayerCache {
    /// `(rows, kv_heads, cap, head_dim)` each, contiguous.
    k: Tensor,
    v: Tensor,
    /// The live slots are `start..start + len`.
    start: usize,
    len: usize,
    written: usize,
    owner: Arc<()>,
}

impl LayerCache {
    /// A cache holding exactly `k, v: (rows, kv_heads, len, head_dim)`.
    fn exact(k: Tensor, v: Tensor) -> Result<Self> {
        let len = k.dim(2)?;
        Ok(Self {
            k: k.contiguous()?,
            v: v.contiguous()?,
            start: 0,
            len,
            written: len,
            owner: Arc::new(()),
        })
    }

    fn view(&self) -> Result<LayerKv> {
        Ok(LayerKv {
            k: self.k.narrow(2, self.start, self.len)?,
            v: self.v.narrow(2, self.start, self.len)?,
        })
    }

    /// Appends `k, v: (rows, kv_heads, new, head_dim)`: in place when the
    /// buffers are this state's alone and have room, else into new buffers
    /// with `max(32, len / 4)` spare slots.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let new = k.dim(2)?;
        let at = self.start + self.len;
        let in_place = at == self.written
            && at + new <= self.k.dim(2)?
            && Arc::get_mut(&mut self.owner).is_some();
        if in_place {
            self.k.slice_set(&k.contiguous()?, 2, at)?;
            self.v.slice_set(&v.contiguous()?, 2, at)?;
        } else {
            let spare = ((self.len + new) / 4).max(SPARE_SLOTS);
            self.k = self.grown(&self.k, k, spare)?;
            self.v = self.grown(&self.v, v, spare)?;
            self.start = 0;
            self.owner = Arc::new(());
        }
        self.len += new;
        self.written = self.start + self.len;
        Ok(())
    }

    /// `[live slots of buf, new, spare zero slots]` along the slots.
    fn grown(&self, buf: &Tensor, new: &Tensor, spare: usize) -> Result<Tensor> {
        let (rows, heads, _, dim) = buf.dims4()?;
        let zeros = Tensor::zeros((rows, heads, spare, dim), buf.dtype(), buf.device())?;
        let live = buf.narrow(2, self.start, self.len)?;
        Ok(Tensor::cat(&[&live, new, &zeros], 2)?)
    }

    /// Keeps the rows `idx` of the whole buffers, spare slots included, so the
    /// next append after a beam reorder is in place.
    fn select_rows(&mut self, idx: &Tensor) -> Result<()> {
        self.k = self.k.index_select(idx, 0)?;
        self.v = self.v.index_select(idx, 0)?;
        self.owner = Arc::new(());
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct DecodeState {
    layers: Vec<Option<LayerCache>>,
    pads: Vec<usize>,
    len: usize,
}

impl DecodeState {
    /// An empty state for a model of `num_layers` cached layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            pads: Vec::new(),
            len: 0,
        }
    }

    /// Rows (sequences) held; 0 before the first forward.
    pub fn rows(&self) -> usize {
        self.pads.len()
    }

    /// Slots per row, padding included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Left-padding slots of each row.
    pub fn pads(&self) -> &[usize] {
        &self.pads
    }

    /// Tokens held by `row`, padding excluded (the next token's position).
    pub fn row_len(&self, row: usize) -> usize {
        self.len - self.pads.get(row).copied().unwrap_or(0)
    }

    /// Declares the rows of the first forward and their left padding.
    pub fn begin(&mut self, pads: Vec<usize>) -> Result<()> {
        if !self.is_empty() {
            return Err(ModelError::State(format!(
                "begin on a state that already holds {} slots; truncate(0) first",
                self.len
            )));
        }
        self.pads = pads;
        Ok(())
    }

    /// Positions of the next `new` slots: `(rows, new)` u32, 0 on padding.
    pub fn positions(&self, rows: usize, new: usize, device: &Device) -> Result<Tensor> {
        self.check_rows(rows)?;
        let mut pos = Vec::with_capacity(rows * new);
        for r in 0..rows {
            let pad = self.pad(r);
            pos.extend((0..new).map(|i| (self.len + i).saturating_sub(pad) as u32));
        }
        Ok(Tensor::from_vec(pos, (rows, new), device)?)
    }

    fn pad(&self, row: usize) -> usize {
        self.pads.get(row).copied().unwrap_or(0)
    }

    fn check_rows(&self, rows: usize) -> Result<()> {
        if !self.pads.is_empty() && rows != self.pads.len() {
            return Err(ModelError::State(format!(
                "input has {rows} rows but the state holds {}",
                self.pads.len()
            )));
        }
        Ok(())
    }

    /// Additive attention mask for `new` queries: `(rows, 1, new, len + new)`,
    /// 0 where allowed and -inf elsewhere; `None` when nothing needs masking.
    ///
    /// Query slot `q` sees key slot `j` iff `pad <= j <= q` and, with a window,
    /// `q - j < window`. A padded query also sees itself, so its softmax is never
    /// over an empty set (NaN there would leak into later layers through `0 * NaN`).
    pub fn mask(
        &self,
        rows: usize,
        new: usize,
        window: Option<usize>,
        device: &Device,
    ) -> Result<Option<Tensor>> {
        self.check_rows(rows)?;
        let total = self.len + new;
        let padded = (0..rows).any(|r| self.pad(r) > 0);
        let windowed = window.is_some_and(|w| w < total);
        if new == 1 && !padded && !windowed {
            return Ok(None);
        }
        let mut data = vec![0f32; rows * new * total];
        for r in 0..rows {
            let pad = self.pad(r);
            for i in 0..new {
                let q = self.len + i;
                let row = &mut data[(r * new + i) * total..(r * new + i + 1) * total];
                for (j, m) in row.iter_mut().enumerate() {
                    let in_window = window.is_none_or(|w| q < j + w);
                    let allowed = (j >= pad && j <= q && in_window) || j == q;
                    if !allowed {
                        *m = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Ok(Some(Tensor::from_vec(data, (rows, 1, new, total), device)?))
    }

    /// Appends `k, v: (rows, kv_heads, new, head_dim)` to `layer`, returning the
    /// full cached keys and values. Call [`DecodeState::advance`] after the last layer.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| ModelError::State(format!("layer {layer} out of range")))?;
        let cache = match slot {
            None => slot.insert(LayerCache::exact(k.clone(), v.clone())?),
            Some(cache) => {
                cache.append(k, v)?;
                cache
            }
        };
        let view = cache.view()?;
        Ok((view.k, view.v))
    }

    /// Records that `new` slots were appended to every layer by one forward.
    pub fn advance(&mut self, rows: usize, new: usize) {
        if self.pads.is_empty() {
            self.pads = vec![0; rows];
        }
        self.len += new;
    }

    /// Each row repeated `n` times: row `r` becomes rows `r*n .. r*n + n`.
    pub fn fork(&self, n: usize) -> Result<Self> {
        let order: Vec<usize> = (0..self.rows())
            .flat_map(|r| std::iter::repeat_n(r, n))
            .collect();
        let mut out = self.clone();
        out.reorder(&order)?;
        Ok(out)
    }

    /// Keeps the rows `order` (in that order; repeats allowed), copying the cache.
    /// An empty `order` drops every row and leaves an empty state (as `new`), so a
    /// batch whose requests all finished can be joined again with
    /// [`DecodeState::append_rows`].
    pub fn reorder(&mut self, order: &[usize]) -> Result<()> {
        if let Some(&bad) = order.iter().find(|&&r| r >= self.rows()) {
            return Err(ModelError::State(format!(
                "row {bad} out of range ({} rows)",
                self.rows()
            )));
        }
        if order.is_empty() {
            // A 0-row cache would keep `len` slots that no row owns, and an empty
            // `pads` means "rows not declared yet" to `advance`.
            *self = Self::new(self.layers.len());
            return Ok(());
        }
        if let Some(first) = self.layers.iter().flatten().next() {
            let idx = Tensor::from_vec(
                order.iter().map(|&r| r as u32).collect::<Vec<_>>(),
                order.len(),
                first.k.device(),
            )?;
            for cache in self.layers.iter_mut().flatten() {
                cache.select_rows(&idx)?;
            }
        }
        self.pads = order.iter().map(|&r| self.pads[r]).collect();
        Ok(())
    }

    /// Puts the rows of `other` after this state's rows, so requests can join a
    /// batch whose rows are mid-generation. The shorter of the two is left-padded
    /// with zero keys and values to the common slot count, and the padding is
    /// added to its rows' `pads`: padded slots are masked and do not count toward
    /// positions, so every row keeps its positions and what it attends to.
    /// Appending to a state without rows takes `other` as it is.
    pub fn append_rows(&mut self, other: DecodeState) -> Result<()> {
        if self.layers.len() != other.layers.len() {
            return Err(ModelError::State(format!(
                "cannot append rows of a {}-layer state to a {}-layer state",
                other.layers.len(),
                self.layers.len()
            )));
        }
        if other.rows() == 0 {
            return Ok(());
        }
        if self.rows() == 0 {
            *self = other;
            return Ok(());
        }
        let len = self.len.max(other.len);
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, (mine, theirs)) in self.layers.iter().zip(&other.layers).enumerate() {
            let (Some(mine), Some(theirs)) = (mine, theirs) else {
                return Err(ModelError::State(format!(
                    "layer {i} has no cached keys in one of the states ({} and {} slots); \
                     rows can only be appended after a forward",
                    self.len, other.len
                )));
            };
            let (mine, theirs) = (mine.view()?, theirs.view()?);
            check_same_kv(i, &mine.k, &theirs.k)?;
            let k = Tensor::cat(
                &[
                    left_pad(&mine.k, len - self.len)?,
                    left_pad(&theirs.k, len - other.len)?,
                ],
                0,
            )?;
            let v = Tensor::cat(
                &[
                    left_pad(&mine.v, len - self.len)?,
                    left_pad(&theirs.v, len - other.len)?,
                ],
                0,
            )?;
            layers.push(Some(LayerCache::exact(k, v)?));
        }
        let (extra_mine, extra_theirs) = (len - self.len, len - other.len);
        let mut pads: Vec<usize> = self.pads.iter().map(|p| p + extra_mine).collect();
        pads.extend(other.pads.iter().map(|p| p + extra_theirs));
        *self = Self { layers, pads, len };
        Ok(())
    }

    /// Drops the leading slots that are padding in every row (the smallest
    /// `pads`), so a batch whose longest rows have left stops paying for their
    /// length. Each row's positions (`len + i - pad`) and the slots it may
    /// attend to shift together, so masks and positions are unchanged.
    pub fn trim_padding(&mut self) -> Result<()> {
        let Some(&cut) = self.pads.iter().min() else {
            return Ok(());
        };
        if cut == 0 {
            return Ok(());
        }
        for cache in self.layers.iter_mut().flatten() {
            cache.start += cut;
            cache.len -= cut;
        }
        self.pads.iter_mut().for_each(|p| *p -= cut);
        self.len -= cut;
        Ok(())
    }

    /// Drops every slot after the first `len` (of all rows).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(ModelError::State(format!(
                "cannot truncate {} slots to {len}",
                self.len
            )));
        }
        if len == 0 {
            *self = Self::new(self.layers.len());
            return Ok(());
        }
        if let Some(&pad) = self.pads.iter().find(|&&p| p > len) {
            return Err(ModelError::State(format!(
                "truncating to {len} slots would cut into {pad} padding slots"
            )));
        }
        for cache in self.layers.iter_mut().flatten() {
            cache.len = len;
        }
        self.len = len;
        Ok(())
    }

    /// The cached keys and values of `layer`, if any: views of the live slots.
    pub fn layer(&self, layer: usize) -> Option<LayerKv> {
        let cache = self.layers.get(layer).and_then(Option::as_ref)?;
        cache.view().ok()
    }
}

/// `x: (rows, kv_heads, len, head_dim)` with `extra` zero slots in front along dim 2.
fn left_pad(x: &Tensor, extra: usize) -> Result<Tensor> {
    if extra == 0 {
        return Ok(x.clone());
    }
    let (rows, heads, _, dim) = x.dims4()?;
    let zeros = Tensor::zeros((rows, heads, extra, dim), x.dtype(), x.device())?;
    Ok(Tensor::cat(&[&zeros, x], 2)?)
}

/// Keys of two states can share a batch only with the same heads, head size and dtype.
fn check_same_kv(layer: usize, a: &Tensor, b: &Tensor) -> Result<()> {
    let (da, db) = (a.dims(), b.dims());
    let same = da.len() == 4 && db.len() == 4 && da[1] == db[1] && da[3] == db[3];
    if !same || a.dtype() != b.dtype() {
        return Err(ModelError::State(format!(
            "layer {layer}: cannot append keys of shape {db:?} ({:?}) to keys of shape {da:?} ({:?}); \
             (rows, kv_heads, len, head_dim) must agree but for rows and len",
            b.dtype(),
            a.dtype()
        )));
    }
    Ok(())
}
