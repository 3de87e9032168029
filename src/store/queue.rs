//! The queue between the producers of events and the writer thread, bounded in events rather than in
//! messages: producers hand over chunks of any size, the writer takes everything waiting in one go,
//! and a producer waits only when `capacity` events are queued. (A channel bounded in messages either
//! holds too many events when chunks are large, which a crash would lose, or makes producer and
//! writer wake each other for every small chunk.)

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Why a push was refused: the writer has stopped. The item is given back.
#[derive(Debug)]
pub(super) struct Closed<T>(pub T);

pub(super) enum Pop<T> {
    Items(Vec<T>),
    /// Nothing arrived before the deadline.
    Timeout,
    /// Every producer is gone and the queue is empty.
    Finished,
}

pub(super) struct Queue<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<(T, usize)>,
    /// The sum of the weights (events) of `items`.
    queued: usize,
    /// The writer stopped: pushes fail.
    closed: bool,
    /// The producers are gone: the writer drains the queue and ends.
    finished: bool,
}

impl<T> Queue<T> {
    pub fn new(capacity: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                queued: 0,
                closed: false,
                finished: false,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state half-updated: recover it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`, which counts as `weight` events. When the queue is full, calls `waiting` once
    /// and waits for room (a single item larger than the capacity goes into an empty queue).
    pub fn push(&self, item: T, weight: usize, waiting: impl FnOnce()) -> Result<(), Closed<T>> {
        let mut state = self.lock();
        let mut waiting = Some(waiting);
        while !state.closed && state.queued > 0 && state.queued + weight > self.capacity {
            if let Some(report) = waiting.take() {
                report();
            }
            state = self.not_full.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if state.closed {
            return Err(Closed(item));
        }
        state.queued += weight;
        state.items.push_back((item, weight));
        drop(state);
        self.not_empty.notify_one();
        Ok(())
    }

    /// Everything queued, waiting until `deadline` (or for ever) for something to arrive.
    pub fn pop_all(&self, deadline: Option<Instant>) -> Pop<T> {
        let mut state = self.lock();
        loop {
            if !state.items.is_empty() {
                let items: Vec<T> = state.items.drain(..).map(|(item, _)| item).collect();
                state.queued = 0;
                drop(state);
                self.not_full.notify_all();
                return Pop::Items(items);
            }
            if state.finished {
                return Pop::Finished;
            }
            state = match deadline {
                None => self
                    .not_empty
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Pop::Timeout;
                    }
                    self.not_empty
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// The producers are done: the writer ends once the queue is empty.
    pub fn finish(&self) {
        self.lock().finished = true;
        self.not_empty.notify_all();
    }

    /// The writer stopped: waiting and future pushes fail.
    pub fn close(&self) {
        self.lock().closed = true;
        self.not_full.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn producers_wait_for_room_counted_in_events_and_nothing_is_lost() {
        let queue = Arc::new(Queue::new(10));
        let producer = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || {
                let mut waits = 0;
                for n in 0..1000u32 {
                    queue.push(n, 3, || waits += 1).unwrap();
                }
                queue.finish();
                waits
            })
        };
        let mut got = Vec::new();
        loop {
            match queue.pop_all(None) {
                Pop::Items(items) => {
                    // At most 10 events' worth (3 chunks of 3) were ever queued together.
                    assert!(items.len() <= 3, "{}", items.len());
                    got.extend(items);
                }
                Pop::Timeout => unreachable!("no deadline"),
                Pop::Finished => break,
            }
        }
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert!(producer.join().unwrap() > 0, "the producer had to wait");
    }

    #[test]
    fn an_oversized_item_goes_into_an_empty_queue_and_a_closed_queue_refuses() {
        let queue = Queue::new(2);
        queue
            .push("big", 50, || panic!("an empty queue has room"))
            .unwrap();
        assert!(matches!(queue.pop_all(None), Pop::Items(v) if v == ["big"]));
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(matches!(queue.pop_all(Some(deadline)), Pop::Timeout));
        queue.close();
        assert!(matches!(queue.push("late", 1, || {}), Err(Closed("late"))));
    }
}
