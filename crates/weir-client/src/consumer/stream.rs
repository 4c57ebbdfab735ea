//! The consumer's records as a [`futures_core::Stream`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::{Consumer, ConsumerRecord};
use crate::Result;

type Pending<'a> =
    Pin<Box<dyn Future<Output = (&'a mut Consumer, Result<ConsumerRecord>)> + Send + 'a>>;

/// A [`Stream`] of the records [`Consumer::recv`] returns (errors included), borrowed from
/// the consumer by [`Consumer::stream`]. It never ends on its own; dropping it (even while a
/// record is being awaited) leaves the consumer usable.
pub struct RecordStream<'a> {
    state: State<'a>,
}

enum State<'a> {
    Idle(&'a mut Consumer),
    Waiting(Pending<'a>),
    /// Only while `poll_next` moves between the other two.
    Moving,
}

impl std::fmt::Debug for RecordStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream").finish_non_exhaustive()
    }
}

impl<'a> RecordStream<'a> {
    pub(super) fn new(consumer: &'a mut Consumer) -> Self {
        Self {
            state: State::Idle(consumer),
        }
    }
}

impl Stream for RecordStream<'_> {
    type Item = Result<ConsumerRecord>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match std::mem::replace(&mut self.state, State::Moving) {
                State::Idle(consumer) => {
                    self.state = State::Waiting(Box::pin(async move {
                        let record = consumer.recv().await;
                        (consumer, record)
                    }));
                }
                State::Waiting(mut pending) => {
                    return match pending.as_mut().poll(cx) {
                        Poll::Ready((consumer, record)) => {
                            self.state = State::Idle(consumer);
                            Poll::Ready(Some(record))
                        }
                        Poll::Pending => {
                            self.state = State::Waiting(pending);
                            Poll::Pending
                        }
                    };
                }
                State::Moving => return Poll::Ready(None),
            }
        }
    }
}
