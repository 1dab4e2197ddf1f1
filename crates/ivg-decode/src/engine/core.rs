//! The step-wise engine: requests are admitted and retired between steps
//! (continuous batching), and one step samples one token for every row of
//! every live request, whatever its method, with one forward per model.
//!
//! Row layout: the live requests in admission order, each a contiguous block
//! of its `W*K` rows; the base model's decode state and logits follow that
//! layout. Each value function (a [`Slot`]) holds the rows of the requests
//! that use it in the same relative order. A request's rows only ever change
//! at its own chunk boundaries, when the engine reorders every state.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Tensor;
use ivg_models::CausalLm;
use ivg_tokenize::{check_same_vocab, Tokenizer};
use ivg_value::{Feed, ValueFunction};

use crate::engine::base::{BaseModel, BaseRows, TopKCoverage};
use crate::engine::search::Search;
use crate::engine::slots::{missing, RequestId, Slot, SlotValue};
use crate::engine::{ChunkTrace, GuidedOutput};
use crate::generate::DecodeError;
use crate::guidance::{ChunkRanking, GuidanceConfig, TokenPolicy};
use crate::guide_source::{GuideSource, ValueRole};
use crate::sampling::row_seed;

mod remote;

/// A registered guide set, named in [`Request::guides`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuideSetId(usize);

/// One prompt to decode with its own configuration.
#[derive(Debug, Clone)]
pub struct Request {
    /// The prompt text as given to the value functions (each applies its own
    /// template and tokenizer).
    pub text: String,
    /// The base model's prompt ids (template and chat formatting applied).
    pub prompt_ids: Vec<u32>,
    pub config: GuidanceConfig,
    /// Seed of the request's first row (see `engine::search`).
    pub seed: u64,
    /// The request's label in traces (`ChunkTrace::prompt`).
    pub label: usize,
    /// The guide set its value functions come from (`None`: Base only).
    pub guides: Option<GuideSetId>,
}

impl Request {
    /// Prompt number `index` of a run seeded with `config.seed`: it samples
    /// exactly as prompt `index` of [`crate::guided_generate`] does.
    pub fn new(
        text: impl Into<String>,
        prompt_ids: Vec<u32>,
        config: GuidanceConfig,
        index: usize,
        guides: Option<GuideSetId>,
    ) -> Self {
        Self {
            text: text.into(),
            prompt_ids,
            seed: row_seed(config.seed, index),
            config,
            label: index,
            guides,
        }
    }
}

/// What a step produced for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Tokens that became final, following those reported before: the tokens
    /// common to every remaining candidate (all of them when one row decodes).
    Tokens { id: RequestId, tokens: Vec<u32> },
    /// A remote base's top-k at one step of a token-level guided request:
    /// per unfinished row, the base mass the candidates cover and the bound
    /// on the total-variation error of sampling among them.
    TopK {
        id: RequestId,
        step: usize,
        rows: Vec<TopKCoverage>,
    },
    /// The request failed (a remote base's call failed); the tokens reported
    /// final before stay valid, and the other requests go on.
    Failed { id: RequestId, error: String },
    /// A chunk boundary's candidates (only with [`Engine::with_traces`]).
    Chunk { id: RequestId, trace: ChunkTrace },
    /// The request ended; its `Tokens` events add up to `output.tokens`.
    Finished { id: RequestId, output: GuidedOutput },
}

enum GuideSet {
    Lent(String),
    Source(Arc<dyn GuideSource>),
}

struct Live {
    id: RequestId,
    guides: Option<usize>,
    search: Search,
}

/// A step-wise decoder over one base model. See the module documentation.
pub struct Engine<'a> {
    base: BaseRows<'a>,
    /// The base's vocabulary size.
    base_vocab: usize,
    tokenizer: Option<&'a Tokenizer>,
    stop_ids: Vec<u32>,
    sets: Vec<GuideSet>,
    slots: Vec<Slot<'a>>,
    live: Vec<Live>,
    pending: Vec<(RequestId, Request)>,
    next_id: RequestId,
    traces: bool,
}

/// The value roles a config uses, each with the feed it needs: stepped when
/// the role guides token-wise, chunked when it only ranks.
pub fn value_feeds(config: &GuidanceConfig) -> Vec<(ValueRole, Feed)> {
    let token = match config.token {
        TokenPolicy::Base => None,
        TokenPolicy::Implicit { .. } => Some(ValueRole::Implicit),
        TokenPolicy::Explicit { .. } => Some(ValueRole::Explicit),
    };
    let chunk = match config.chunk {
        ChunkRanking::None => None,
        ChunkRanking::Implicit => Some(ValueRole::Implicit),
        ChunkRanking::Explicit => Some(ValueRole::Explicit),
    };
    let mut out: Vec<(ValueRole, Feed)> = token.map(|r| (r, Feed::Stepped)).into_iter().collect();
    if let Some(r) = chunk.filter(|&r| Some(r) != token) {
        out.push((r, Feed::Chunked));
    }
    out
}

fn token_role(config: &GuidanceConfig) -> Option<(ValueRole, f64)> {
    match config.token {
        TokenPolicy::Base => None,
        TokenPolicy::Implicit { beta } => Some((ValueRole::Implicit, beta)),
        TokenPolicy::Explicit { beta } => Some((ValueRole::Explicit, beta)),
    }
}

fn chunk_role(config: &GuidanceConfig) -> Option<ValueRole> {
    match config.chunk {
        ChunkRanking::None => None,
        ChunkRanking::Implicit => Some(ValueRole::Implicit),
        ChunkRanking::Explicit => Some(ValueRole::Explicit),
    }
}

impl<'a> Engine<'a> {
    /// An engine over `base`; `stop_ids` end a row (emitted, then it stops).
    /// Stop strings need `tokenizer`.
    pub fn new(base: &'a CausalLm, tokenizer: Option<&'a Tokenizer>, stop_ids: Vec<u32>) -> Self {
        Self::with_base(BaseModel::Local(base), tokenizer, stop_ids)
    }

    /// An engine over `base`, in process or remote (see `engine::base`).
    pub fn with_base(
        base: BaseModel<'a>,
        tokenizer: Option<&'a Tokenizer>,
        stop_ids: Vec<u32>,
    ) -> Self {
        Self {
            base_vocab: base.vocab_size(),
            base: BaseRows::new(base),
            tokenizer,
            stop_ids,
            sets: Vec::new(),
            slots: Vec::new(),
            live: Vec::new(),
            pending: Vec::new(),
            next_id: 0,
            traces: false,
        }
    }

    /// Reports every chunk boundary as an [`Event::Chunk`].
    pub fn with_traces(mut self) -> Self {
        self.traces = true;
        self
    }

    /// Registers a loaded guide set; its value functions are built when a
    /// request first needs them and dropped when none does.
    pub fn add_guides(&mut self, source: Arc<dyn GuideSource>) -> GuideSetId {
        self.sets.push(GuideSet::Source(source));
        GuideSetId(self.sets.len() - 1)
    }

    /// Registers value functions lent by the caller, one per role, used as
    /// they are (whatever their feed).
    pub fn lend_guides(
        &mut self,
        implicit: Option<&'a mut dyn ValueFunction>,
        explicit: Option<&'a mut dyn ValueFunction>,
    ) -> GuideSetId {
        let set = self.sets.len();
        self.sets.push(GuideSet::Lent(format!("guides {set}")));
        let lent = [
            (ValueRole::Implicit, implicit),
            (ValueRole::Explicit, explicit),
        ];
        for (role, value) in lent {
            if let Some(v) = value {
                self.slots.push(Slot {
                    set,
                    role,
                    feed: None,
                    value: SlotValue::Borrowed(v),
                    members: Vec::new(),
                });
            }
        }
        GuideSetId(set)
    }

    /// Queues a request; it joins the batch at the next step. Errors name the
    /// setting at fault, and leave the engine as it was.
    pub fn admit(&mut self, request: Request) -> Result<RequestId, DecodeError> {
        request.config.validate()?;
        if !request.config.stop_strings.is_empty() && self.tokenizer.is_none() {
            return Err(DecodeError::Config {
                field: "stop_strings",
                problem: "stop strings need the base tokenizer (Guides::base_tokenizer)".into(),
            });
        }
        if request.prompt_ids.is_empty() {
            return Err(DecodeError::Config {
                field: "prompt",
                problem: "the base prompt has no tokens".into(),
            });
        }
        let needs = value_feeds(&request.config);
        if !needs.is_empty() {
            let set = request
                .guides
                .ok_or_else(|| missing(needs[0].0, "none given"))?;
            for &(role, feed) in &needs {
                let slot = self.slot_for(set.0, role, feed)?;
                if feed == Feed::Stepped {
                    self.check_vocab(slot)?;
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push((id, request));
        Ok(id)
    }

    /// Drops a queued or live request and frees its rows at once; false when
    /// the id is unknown or already finished.
    pub fn cancel(&mut self, id: RequestId) -> Result<bool, DecodeError> {
        if let Some(i) = self.pending.iter().position(|(p, _)| *p == id) {
            self.pending.remove(i);
            return Ok(true);
        }
        if !self.live.iter().any(|l| l.id == id) {
            return Ok(false);
        }
        let orders = HashMap::from([(id, Vec::new())]);
        let counts = self.row_counts();
        self.regroup(&orders, &counts, None)?;
        Ok(true)
    }

    /// Requests admitted and not yet finished.
    pub fn requests(&self) -> usize {
        self.live.len() + self.pending.len()
    }

    /// Requests waiting for their first step.
    pub fn queued(&self) -> usize {
        self.pending.len()
    }

    /// Rows decoding in the batch.
    pub fn rows(&self) -> usize {
        self.live.iter().map(|l| l.search.rows.len()).sum()
    }

    /// The base model as errors name it.
    pub fn base_name(&self) -> &str {
        self.base.name()
    }

    pub fn is_idle(&self) -> bool {
        self.requests() == 0
    }

    /// One token for every row of every live request (after the queued ones
    /// joined); returns what became final.
    pub fn step(&mut self) -> Result<Vec<Event>, DecodeError> {
        self.start_pending()?;
        let mut events = Vec::new();
        self.fetch_remote(&mut events)?;
        if self.live.is_empty() {
            return Ok(events);
        }
        let (tokens, ended) = self.sample(&mut events)?;
        self.observe(&tokens, &ended)?;
        let counts = self.row_counts();
        let orders = self.boundaries(&mut events)?;
        for l in &mut self.live {
            if orders.get(&l.id).is_none_or(|o| !o.is_empty()) {
                let settled = l.search.settled();
                if settled.len() > l.search.emitted {
                    let new = settled[l.search.emitted..].to_vec();
                    l.search.emitted = settled.len();
                    events.push(Event::Tokens {
                        id: l.id,
                        tokens: new,
                    });
                }
            }
        }
        self.regroup(&orders, &counts, Some(&tokens))?;
        Ok(events)
    }

    /// `(rows, vocab)` logits the token-level policy samples the next token of
    /// every row from, before temperature: `l_base (+ beta * offsets)`.
    pub fn policy_logits(&mut self) -> Result<Tensor, DecodeError> {
        self.start_pending()?;
        let mut failures = Vec::new();
        self.fetch_remote(&mut failures)?;
        if let Some(Event::Failed { error, .. }) = failures.into_iter().next() {
            return Err(DecodeError::Remote {
                engine: self.base.name().to_string(),
                problem: error,
            });
        }
        let parts = (0..self.live.len())
            .map(|i| self.request_logits(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    }

    fn slot_index(&self, set: usize, role: ValueRole, feed: Feed) -> Option<usize> {
        self.slots.iter().position(|s| s.serves(set, role, feed))
    }

    /// The slot serving `role` of `set` fed as `feed`, built if needed.
    fn slot_for(&mut self, set: usize, role: ValueRole, feed: Feed) -> Result<usize, DecodeError> {
        if let Some(i) = self.slot_index(set, role, feed) {
            return Ok(i);
        }
        let value = match self.sets.get(set) {
            Some(GuideSet::Source(src)) if src.has(role) => src.build(role, feed)?,
            Some(GuideSet::Source(src)) => return Err(missing(role, src.name())),
            Some(GuideSet::Lent(name)) => return Err(missing(role, name)),
            None => {
                return Err(DecodeError::Config {
                    field: "guides",
                    problem: format!("no guide set {set} is registered"),
                })
            }
        };
        self.slots.push(Slot {
            set,
            role,
            feed: Some(feed),
            value: SlotValue::Owned(value),
            members: Vec::new(),
        });
        Ok(self.slots.len() - 1)
    }

    /// Token-wise guidance needs the guide to share the base's vocabulary.
    fn check_vocab(&self, slot: usize) -> Result<(), DecodeError> {
        let guide = self.slots[slot].value.get_ref();
        if let (Some(b), Some(g)) = (self.tokenizer, guide.tokenizer()) {
            check_same_vocab(self.base.name(), b, guide.name(), g)?;
        }
        if self.base.is_remote() && self.tokenizer.is_none() {
            return Err(DecodeError::Config {
                field: "guides",
                problem: format!(
                    "token-level guidance of the remote base `{}` needs its tokenizer, to check \
                     that the guide `{}` shares its vocabulary",
                    self.base.name(),
                    guide.name()
                ),
            });
        }
        Ok(())
    }

    /// Prefills the queued requests as one batch and appends their rows.
    fn start_pending(&mut self) -> Result<(), DecodeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let prompts: Vec<Vec<u32>> = pending.iter().map(|(_, r)| r.prompt_ids.clone()).collect();
        let order: Vec<usize> = pending
            .iter()
            .enumerate()
            .flat_map(|(i, (_, r))| std::iter::repeat_n(i, r.config.rows_per_prompt()))
            .collect();
        self.base.add(&prompts, &order)?;
        let mut joining: HashMap<usize, Vec<(RequestId, usize, &str)>> = HashMap::new();
        for (id, r) in &pending {
            let n = r.config.rows_per_prompt();
            for (role, feed) in value_feeds(&r.config) {
                let set = r.guides.map_or(usize::MAX, |g| g.0);
                let slot = self.slot_for(set, role, feed)?;
                joining
                    .entry(slot)
                    .or_default()
                    .push((*id, n, r.text.as_str()));
            }
        }
        for (slot, members) in joining {
            self.slots[slot].join(&members)?;
        }
        for (id, r) in pending {
            self.live.push(Live {
                id,
                guides: r.guides.map(|g| g.0),
                search: Search::new(r.config, r.seed, r.label)?,
            });
        }
        Ok(())
    }

    /// Rows of each live request, in batch order.
    fn row_counts(&self) -> Vec<usize> {
        self.live.iter().map(|l| l.search.rows.len()).collect()
    }

    /// First row of live request `i` in the batch.
    fn offset(&self, i: usize) -> usize {
        self.live[..i].iter().map(|l| l.search.rows.len()).sum()
    }

    /// The policy logits of live request `i`'s rows, `(rows_i, vocab)`.
    fn request_logits(&self, i: usize) -> Result<Tensor, DecodeError> {
        let n = self.live[i].search.rows.len();
        let Some(base) = self.base.local_logits(self.offset(i), n)? else {
            let rows = self.remote_policy(i)?;
            let vocab = self.base_vocab();
            let flat: Vec<f32> = rows
                .into_iter()
                .flat_map(|r| r.map_or_else(|| vec![0.0; vocab], |(dense, _)| dense))
                .collect();
            return Ok(Tensor::from_vec(
                flat,
                (n, vocab),
                &candle_core::Device::Cpu,
            )?);
        };
        match self.guide_offsets(i)? {
            None => Ok(base),
            Some(offsets) if offsets.dims() == base.dims() => Ok((base + offsets)?),
            Some(offsets) => Err(DecodeError::Vocabulary(format!(
                "the guide gives logits of shape {:?}, the base model `{}` {:?}",
                offsets.dims(),
                self.base.name(),
                base.dims()
            ))),
        }
    }

    /// `beta` times the token-level guide's offsets for live request `i`'s
    /// rows, `(rows_i, vocab)`; `None` without token-level guidance.
    fn guide_offsets(&self, i: usize) -> Result<Option<Tensor>, DecodeError> {
        let live = &self.live[i];
        let n = live.search.rows.len();
        let Some((role, beta)) = token_role(&live.search.config) else {
            return Ok(None);
        };
        if beta == 0.0 {
            return Ok(None);
        }
        let set = live.guides.unwrap_or(usize::MAX);
        let slot = self
            .slot_index(set, role, Feed::Stepped)
            .ok_or_else(|| missing(role, "of the request"))?;
        let guide = self.slots[slot].value.get_ref();
        let (start, _) = self.slots[slot]
            .range(live.id)
            .ok_or_else(|| missing(role, "of the request"))?;
        let offsets = guide.guidance()?.ok_or_else(|| DecodeError::Config {
            field: "guides",
            problem: format!(
                "value function `{}` does not guide token-wise (build it with Feed::Stepped)",
                guide.name()
            ),
        })?;
        Ok(Some((offsets.narrow(0, start, n)? * beta)?))
    }

    /// Samples one token per row (a finished row repeats its last token,
    /// ignored downstream); returns the tokens in batch order, and which rows
    /// a remote base ended with them.
    fn sample(&mut self, events: &mut Vec<Event>) -> Result<(Vec<u32>, Vec<bool>), DecodeError> {
        let mut tokens = Vec::with_capacity(self.rows());
        let mut ended = vec![false; self.rows()];
        for i in 0..self.live.len() {
            let offset = self.offset(i);
            let remote = self.base.is_remote();
            if remote && token_role(&self.live[i].search.config).is_none() {
                self.take_chunk_tokens(i, offset, &mut tokens, &mut ended)?;
                continue;
            }
            let host: Vec<Option<Vec<f32>>> = if remote {
                let rows = self.remote_policy(i)?;
                let coverage = rows
                    .iter()
                    .filter_map(|r| r.as_ref().map(|r| r.1))
                    .collect();
                let step = self.live[i].search.steps;
                let id = self.live[i].id;
                events.push(Event::TopK {
                    id,
                    step,
                    rows: coverage,
                });
                rows.into_iter().map(|r| r.map(|r| r.0)).collect()
            } else {
                let host = self.request_logits(i)?.to_vec2::<f32>()?;
                host.into_iter().map(Some).collect()
            };
            for (row, logits) in self.live[i].search.rows.iter_mut().zip(&host) {
                let t = match (row.finished, logits) {
                    (false, Some(logits)) => row.sampler.sample(logits)?,
                    _ => row.tokens.last().copied().unwrap_or(0),
                };
                tokens.push(t);
            }
        }
        Ok((tokens, ended))
    }

    /// Feeds the step's tokens to every value function and to the rows;
    /// `ended` marks rows a remote base ended.
    fn observe(&mut self, tokens: &[u32], ended: &[bool]) -> Result<(), DecodeError> {
        let mut at: HashMap<RequestId, (usize, usize)> = HashMap::new();
        let mut offset = 0;
        for l in &self.live {
            let n = l.search.rows.len();
            at.insert(l.id, (offset, n));
            offset += n;
        }
        let live_flags: Vec<bool> = self
            .live
            .iter()
            .flat_map(|l| l.search.rows.iter().map(|r| !r.finished))
            .collect();
        for slot in &mut self.slots {
            if slot.members.is_empty() {
                continue;
            }
            let mut t = Vec::with_capacity(slot.rows());
            let mut f = Vec::with_capacity(slot.rows());
            for (id, _) in &slot.members {
                let (o, n) = at[id];
                t.extend_from_slice(&tokens[o..o + n]);
                f.extend_from_slice(&live_flags[o..o + n]);
            }
            slot.value.get().observe(&t, &f)?;
        }
        for l in &mut self.live {
            let (o, _) = at[&l.id];
            let config = &l.search.config;
            for (r, row) in l.search.rows.iter_mut().enumerate() {
                if !row.finished {
                    let t = tokens[o + r];
                    row.tokens.push(t);
                    row.finished = ended[o + r]
                        || self.stop_ids.contains(&t)
                        || ends_with_stop_string(&row.tokens, config, self.tokenizer)?;
                }
            }
            l.search.steps += 1;
            l.search.in_chunk += 1;
        }
        Ok(())
    }

    /// Selects at the boundary of every request that reached one; returns
    /// their new local row orders (empty when the request ended).
    fn boundaries(
        &mut self,
        events: &mut Vec<Event>,
    ) -> Result<HashMap<RequestId, Vec<usize>>, DecodeError> {
        let mut values: HashMap<usize, Vec<f64>> = HashMap::new();
        let mut orders = HashMap::new();
        for i in 0..self.live.len() {
            if !self.live[i].search.at_boundary() {
                continue;
            }
            let id = self.live[i].id;
            let n = self.live[i].search.rows.len();
            let row_values = match chunk_role(&self.live[i].search.config) {
                None => vec![0.0; n],
                Some(role) => {
                    let feed =
                        if token_role(&self.live[i].search.config).is_some_and(|t| t.0 == role) {
                            Feed::Stepped
                        } else {
                            Feed::Chunked
                        };
                    let set = self.live[i].guides.unwrap_or(usize::MAX);
                    let slot = self
                        .slot_index(set, role, feed)
                        .ok_or_else(|| missing(role, "of the request"))?;
                    if let std::collections::hash_map::Entry::Vacant(e) = values.entry(slot) {
                        e.insert(self.slots[slot].value.get().values()?);
                    }
                    let (start, _) = self.slots[slot]
                        .range(id)
                        .ok_or_else(|| missing(role, "of the request"))?;
                    values[&slot][start..start + n].to_vec()
                }
            };
            let search = &mut self.live[i].search;
            let selection = search.select(&row_values);
            if self.traces {
                events.push(Event::Chunk {
                    id,
                    trace: selection.trace,
                });
            }
            if selection.order.is_empty() || search.is_last() {
                let output = search.output();
                if output.tokens.len() > search.emitted {
                    let rest = output.tokens[search.emitted..].to_vec();
                    events.push(Event::Tokens { id, tokens: rest });
                }
                events.push(Event::Finished { id, output });
                orders.insert(id, Vec::new());
            } else {
                orders.insert(id, selection.order);
            }
        }
        Ok(orders)
    }

    /// Applies the requests' new row orders to every state, drops ended
    /// requests, and, when `tokens` is given, steps the base model on each
    /// row's last token. `counts` are the rows each live request held in the
    /// batch before its boundary.
    fn regroup(
        &mut self,
        orders: &HashMap<RequestId, Vec<usize>>,
        counts: &[usize],
        tokens: Option<&[u32]>,
    ) -> Result<(), DecodeError> {
        let mut order = Vec::with_capacity(self.rows());
        let mut offset = 0;
        let mut identity = true;
        for (l, &n) in self.live.iter().zip(counts) {
            match orders.get(&l.id) {
                Some(local) => {
                    identity &= local.len() == n && local.iter().enumerate().all(|(i, &r)| i == r);
                    order.extend(local.iter().map(|&r| offset + r));
                }
                None => order.extend(offset..offset + n),
            }
            offset += n;
        }
        for slot in &mut self.slots {
            slot.regroup(orders)?;
        }
        self.slots
            .retain(|s| !(s.members.is_empty() && matches!(s.value, SlotValue::Owned(_))));
        self.live
            .retain(|l| orders.get(&l.id).is_none_or(|o| !o.is_empty()));
        if order.is_empty() {
            self.base.clear();
            return Ok(());
        }
        if !identity {
            self.base.reorder(&order)?;
        }
        if let Some(tokens) = tokens {
            let next: Vec<u32> = order.iter().map(|&r| tokens[r]).collect();
            self.base.advance(&next)?;
        }
        Ok(())
    }
}

/// Whether the text of `tokens` now contains a stop string. Only the tail is
/// decoded: a string of `c` characters spans at most `4c` byte-level tokens.
fn ends_with_stop_string(
    tokens: &[u32],
    config: &GuidanceConfig,
    tokenizer: Option<&Tokenizer>,
) -> Result<bool, DecodeError> {
    if config.stop_strings.is_empty() {
        return Ok(false);
    }
    let tokenizer = tokenizer.ok_or_else(|| DecodeError::Config {
        field: "stop_strings",
        problem: "stop strings need the base tokenizer (Guides::base_tokenizer)".into(),
    })?;
    let longest = config
        .stop_strings
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0);
    let tail = &tokens[tokens.len().saturating_sub(4 * longest + 4)..];
    let text = tokenizer
        .decode(tail, false)
        .map_err(|e| DecodeError::Config {
            field: "stop_strings",
            problem: e.to_string(),
        })?;
    Ok(config
        .stop_strings
        .iter()
        .any(|s| text.contains(s.as_str())))
}

pub(crate) fn select_rows(t: &Tensor, order: &[usize]) -> Result<Tensor, DecodeError> {
    let idx = Tensor::from_vec(
        order.iter().map(|&r| r as u32).collect::<Vec<_>>(),
        order.len(),
        t.device(),
    )?;
    Ok(t.contiguous()?.index_select(&idx, 0)?)
}
