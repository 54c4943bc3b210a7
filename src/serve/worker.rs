//! The engine thread: it owns the llama.cpp context (which must stay on one thread) and
//! runs the same continuous-batching scheduler as `edge batch`, fed from a bounded
//! queue of jobs. Each job carries the channel its HTTP handler listens on; a handler
//! that goes away (the client disconnected) closes it, and the job stops before the
//! next decode step.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::metrics::Metrics;
use crate::engine::{
    run_batch, BatchFeed, BatchSpeculation, ContextSpec, DecodeDone, DecodeJob, EngineError,
    JobOutcome, Model, TokenEvent,
};

/// What a handler hears about its job.
#[derive(Debug)]
pub enum Event {
    Token(TokenEvent),
    Done {
        n_prompt: usize,
        outcome: JobOutcome,
    },
}

/// A job's link back to its handler.
#[derive(Debug)]
pub struct Ticket {
    events: UnboundedSender<Event>,
    arrived: Instant,
    first_token: Cell<Option<Instant>>,
    n_generated: Cell<usize>,
}

impl Ticket {
    /// A ticket and the receiver its handler reads.
    pub fn new(arrived: Instant) -> (Ticket, UnboundedReceiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Ticket {
                events: tx,
                arrived,
                first_token: Cell::new(None),
                n_generated: Cell::new(0),
            },
            rx,
        )
    }
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    Full,
    Stopped,
}

/// The bounded queue in front of the engine.
pub struct JobQueue {
    tx: SyncSender<DecodeJob<Ticket>>,
    waiting: Arc<AtomicUsize>,
    capacity: usize,
}

impl JobQueue {
    /// A queue of `capacity` waiting jobs and the receiving end for the engine.
    pub fn new(capacity: usize) -> (JobQueue, QueueReceiver) {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let waiting = Arc::new(AtomicUsize::new(0));
        (
            JobQueue {
                tx,
                waiting: waiting.clone(),
                capacity,
            },
            QueueReceiver { rx, waiting },
        )
    }

    pub fn submit(&self, job: DecodeJob<Ticket>) -> Result<(), Rejected> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => Rejected::Full,
                    TrySendError::Disconnected(_) => Rejected::Stopped,
                })
            }
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

pub struct QueueReceiver {
    rx: Receiver<DecodeJob<Ticket>>,
    waiting: Arc<AtomicUsize>,
}

struct ServeFeed<'a> {
    queue: &'a QueueReceiver,
    metrics: &'a Metrics,
    stop: &'a AtomicBool,
}

/// How often an idle engine looks at the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(100);

impl BatchFeed<Ticket> for ServeFeed<'_> {
    type Error = EngineError;

    fn next_job(&mut self, idle: bool) -> Result<Option<DecodeJob<Ticket>>, EngineError> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let job = if idle {
                match self.queue.rx.recv_timeout(IDLE_POLL) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return Ok(None),
                }
            } else {
                match self.queue.rx.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(None),
                }
            };
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            // The client left while it waited.
            if job.tag.events.is_closed() {
                self.metrics.cancelled();
                continue;
            }
            self.metrics.slot_taken();
            self.metrics.prompt(job.prompt.len());
            return Ok(Some(job));
        }
    }

    fn cancelled(&mut self, tag: &Ticket) -> bool {
        tag.events.is_closed()
    }

    fn token(&mut self, tag: &Ticket, event: TokenEvent) -> Result<(), EngineError> {
        self.metrics.generated();
        if tag.first_token.get().is_none() {
            let now = Instant::now();
            tag.first_token.set(Some(now));
            self.metrics
                .first_token(now.duration_since(tag.arrived).as_secs_f64());
        }
        tag.n_generated.set(tag.n_generated.get() + 1);
        // A failed send means the handler is gone: `cancelled` stops the job next step.
        let _ = tag.events.send(Event::Token(event));
        Ok(())
    }

    fn done(&mut self, done: DecodeDone<Ticket>) -> Result<(), EngineError> {
        let tag = done.tag;
        match &done.outcome {
            JobOutcome::Cancelled { .. } => self.metrics.cancelled(),
            JobOutcome::Finished { .. } => {
                if let Some(first) = tag.first_token.get() {
                    let secs = first.elapsed().as_secs_f64();
                    let n = tag.n_generated.get();
                    if n > 1 && secs > 0.0 {
                        self.metrics.finished((n - 1) as f64 / secs);
                    }
                }
            }
            _ => {}
        }
        self.metrics.slot_freed();
        let _ = tag.events.send(Event::Done {
            n_prompt: done.n_prompt,
            outcome: done.outcome,
        });
        Ok(())
    }
}

/// Serves jobs from `queue` on `model` until `stop` is set. A failed decode (llama.cpp
/// refused a batch) ends the jobs in flight, whose handlers report it, and the loop
/// starts again on a fresh context.
pub fn serve_jobs(
    model: &Model,
    spec: &ContextSpec,
    queue: QueueReceiver,
    metrics: &Metrics,
    stop: &AtomicBool,
    speculation: Option<&BatchSpeculation<'_>>,
    on_error: &dyn Fn(&EngineError),
) -> Result<(), EngineError> {
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let mut feed = ServeFeed {
            queue: &queue,
            metrics,
            stop,
        };
        let result = run_batch(model, spec, &mut feed, stop, speculation);
        metrics.slots_cleared();
        match result {
            Ok(()) => {}
            // A context that cannot even be created will not work on a retry.
            Err(e @ EngineError::Context { .. }) => return Err(e),
            Err(e) => {
                on_error(&e);
                failures += 1;
                if failures > 100 {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}
