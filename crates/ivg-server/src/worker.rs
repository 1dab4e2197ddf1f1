//! The engine thread: one OS thread owns the step-wise engine (CPU-bound
//! model forwards have no place on the async runtime). Between steps it takes
//! new jobs, drops those whose client went away (their rows are freed before
//! the next step), admits waiting jobs up to `max_concurrent`, steps once and
//! sends each job the tokens that became final.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use ivg_decode::{Engine, Event, GuideSetId, GuideSource, GuidedOutput, Request, RequestId};
use ivg_runtime::{GuideSet, LoadedBase};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;

/// What a job hears from the engine, tagged with its choice index.
#[derive(Debug)]
pub enum JobEvent {
    Tokens { choice: usize, tokens: Vec<u32> },
    Done { choice: usize, output: GuidedOutput },
    Failed { choice: usize, message: String },
}

/// One choice of one HTTP request.
pub struct Job {
    /// The engine request; its `guides` is set by the worker from `preset`.
    pub request: Request,
    pub preset: usize,
    pub choice: usize,
    pub reply: UnboundedSender<JobEvent>,
}

struct Running {
    choice: usize,
    reply: UnboundedSender<JobEvent>,
}

/// The engine's models and guide sets, owned by the thread.
pub struct Models {
    pub base: LoadedBase,
    /// The guide set of each preset, if it has one.
    pub guides: Vec<Option<Arc<GuideSet>>>,
}

/// Runs until `jobs` is closed and nothing is left to decode.
pub fn run(models: Models, jobs: Receiver<Job>, max_concurrent: usize, metrics: Arc<Metrics>) {
    let stop_ids = models.base.stop_ids();
    let mut worker = Worker {
        models: &models,
        engine: Engine::with_base(
            models.base.model(),
            Some(&models.base.tokenizer),
            stop_ids.clone(),
        ),
        sets: Vec::new(),
        stop_ids,
        waiting: VecDeque::new(),
        running: HashMap::new(),
        max_concurrent,
        metrics,
    };
    worker.register();
    loop {
        if !worker.receive(&jobs) {
            return;
        }
        worker.drop_disconnected();
        worker.admit();
        worker.publish();
        if !worker.engine.is_idle() {
            worker.step();
            worker.publish();
        }
    }
}

struct Worker<'m> {
    models: &'m Models,
    engine: Engine<'m>,
    sets: Vec<Option<GuideSetId>>,
    stop_ids: Vec<u32>,
    waiting: VecDeque<Job>,
    running: HashMap<RequestId, Running>,
    max_concurrent: usize,
    metrics: Arc<Metrics>,
}

impl<'m> Worker<'m> {
    fn register(&mut self) {
        self.sets = self
            .models
            .guides
            .iter()
            .map(|g| {
                g.as_ref()
                    .map(|g| self.engine.add_guides(g.clone() as Arc<dyn GuideSource>))
            })
            .collect();
    }

    /// Takes new jobs, blocking while there is nothing to do; false once the
    /// channel is closed and the engine is idle.
    fn receive(&mut self, jobs: &Receiver<Job>) -> bool {
        if self.engine.is_idle() && self.waiting.is_empty() {
            // Wake up now and then to notice a closed channel during shutdown.
            match jobs.recv_timeout(Duration::from_millis(200)) {
                Ok(job) => self.waiting.push_back(job),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        while let Ok(job) = jobs.try_recv() {
            self.waiting.push_back(job);
        }
        true
    }

    /// Cancels the jobs whose receiver is gone (the client disconnected).
    fn drop_disconnected(&mut self) {
        let gone: Vec<RequestId> = self
            .running
            .iter()
            .filter(|(_, r)| r.reply.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.running.remove(&id);
            if let Err(e) = self.engine.cancel(id) {
                eprintln!("ivg serve: cancelling request {id}: {e}");
            }
        }
        self.waiting.retain(|j| !j.reply.is_closed());
    }

    fn admit(&mut self) {
        while self.running.len() < self.max_concurrent {
            let Some(job) = self.waiting.pop_front() else {
                break;
            };
            let mut request = job.request;
            request.guides = self.sets.get(job.preset).copied().flatten();
            match self.engine.admit(request) {
                Ok(id) => {
                    self.running.insert(
                        id,
                        Running {
                            choice: job.choice,
                            reply: job.reply,
                        },
                    );
                }
                Err(e) => {
                    let _ = job.reply.send(JobEvent::Failed {
                        choice: job.choice,
                        message: e.to_string(),
                    });
                }
            }
        }
    }

    fn publish(&self) {
        self.metrics.batch(
            self.waiting.len() + self.engine.queued(),
            self.engine.rows(),
            self.running.len(),
        );
    }

    fn step(&mut self) {
        match self.engine.step() {
            Ok(events) => {
                self.metrics.step();
                for event in events {
                    self.dispatch(event);
                }
            }
            Err(e) => self.fail_all(&e.to_string()),
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Tokens { id, tokens } => {
                if let Some(r) = self.running.get(&id) {
                    let _ = r.reply.send(JobEvent::Tokens {
                        choice: r.choice,
                        tokens,
                    });
                }
            }
            Event::Finished { id, output } => {
                if let Some(r) = self.running.remove(&id) {
                    let _ = r.reply.send(JobEvent::Done {
                        choice: r.choice,
                        output,
                    });
                }
            }
            Event::Failed { id, error } => {
                self.metrics.remote_failure();
                if let Some(r) = self.running.remove(&id) {
                    let _ = r.reply.send(JobEvent::Failed {
                        choice: r.choice,
                        message: error,
                    });
                }
            }
            Event::TopK { rows, .. } => self.metrics.topk(&rows),
            Event::Chunk { .. } => {}
        }
    }

    /// A failed step leaves the batch in an unknown state: every running job
    /// fails with the error and the engine starts afresh; waiting jobs stay.
    fn fail_all(&mut self, message: &str) {
        eprintln!(
            "ivg serve: engine step failed, failing {} requests: {message}",
            self.running.len()
        );
        for (_, r) in self.running.drain() {
            let _ = r.reply.send(JobEvent::Failed {
                choice: r.choice,
                message: format!("the engine failed: {message}"),
            });
        }
        self.engine = Engine::with_base(
            self.models.base.model(),
            Some(&self.models.base.tokenizer),
            self.stop_ids.clone(),
        );
        self.register();
    }
}
