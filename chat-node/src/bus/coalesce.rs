//! What the RabbitMQ publisher does with a batch from its outbox: merge the
//! envelopes for one node into as few broker messages as the limits allow,
//! keeping the order of events per node. Pure, so every rule is tested here.

use std::collections::HashMap;

use super::Envelope;
use crate::protocol::json_len;

/// Most events in one broker message.
pub const MAX_EVENTS_PER_MESSAGE: usize = 512;

/// Most bytes in one broker message (its JSON). RabbitMQ refuses a bigger
/// message by closing the publishing channel with 406 PRECONDITION_FAILED
/// (`max_message_size`, 16 MiB by default in RabbitMQ 4). A quarter of that
/// leaves room for a broker configured lower and keeps one message's
/// encode, transfer and decode short; a single event bigger than this
/// (far beyond any frame the node accepts) is dropped and counted.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// How big one broker message may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_events: usize,
    /// In bytes of the envelope's JSON.
    pub max_bytes: usize,
}

impl Limits {
    /// The limits the publisher runs with.
    pub const BROKER: Limits = Limits {
        max_events: MAX_EVENTS_PER_MESSAGE,
        max_bytes: MAX_MESSAGE_BYTES,
    };
}

/// The broker messages of one batch, and what could not travel.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Coalesced {
    /// One envelope per broker message, with its destination port.
    pub messages: Vec<(u16, Envelope)>,
    /// Events too big for a broker message on their own: the port they were
    /// for and the bytes their envelope would have had.
    pub oversized: Vec<(u16, usize)>,
}

/// Merges envelopes into as few as possible per destination node: an
/// envelope joins the previous one for its port when both are for the same
/// run of that node and the result stays within `limits`; an envelope too
/// big on its own is split between its events. Events for one node keep
/// their order.
pub fn coalesce(envelopes: impl IntoIterator<Item = (u16, Envelope)>, limits: Limits) -> Coalesced {
    let mut out = Coalesced::default();
    // Encoded size of each message in `out.messages`, kept exact.
    let mut sizes: Vec<usize> = Vec::new();
    // The last message for each port: the only one a later event may join.
    let mut open: HashMap<u16, usize> = HashMap::new();
    for (port, envelope) in envelopes {
        let events: Vec<usize> = envelope.events.iter().map(json_len).collect();
        if events.is_empty() {
            continue;
        }
        // Commas between the events.
        let body = events.iter().sum::<usize>() + events.len() - 1;
        if let Some(&i) = open.get(&port) {
            let last = &mut out.messages[i].1;
            if last.instance == envelope.instance
                && last.events.len() + events.len() <= limits.max_events
                && sizes[i].saturating_add(1 + body) <= limits.max_bytes
            {
                last.events.extend(envelope.events);
                sizes[i] += 1 + body;
                continue;
            }
        }
        // A new message (or several) of this envelope's events.
        let empty = empty_len(&envelope.instance);
        let mut current: Option<usize> = None;
        for (event, len) in envelope.events.into_iter().zip(events) {
            if empty.saturating_add(len) > limits.max_bytes {
                out.oversized.push((port, empty.saturating_add(len)));
                continue;
            }
            if let Some(i) = current
                && out.messages[i].1.events.len() < limits.max_events
                && sizes[i] + 1 + len <= limits.max_bytes
            {
                out.messages[i].1.events.push(event);
                sizes[i] += 1 + len;
                continue;
            }
            current = Some(out.messages.len());
            sizes.push(empty + len);
            out.messages.push((
                port,
                Envelope {
                    instance: envelope.instance.clone(),
                    events: vec![event],
                },
            ));
        }
        if let Some(i) = current {
            open.insert(port, i);
        }
    }
    out
}

/// Bytes of an envelope for `instance` with no events:
/// `{"instance":"…","events":[]}`.
fn empty_len(instance: &str) -> usize {
    json_len(&Envelope {
        instance: instance.to_owned(),
        events: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Delivery, Event};
    use super::*;

    fn kicks(instance: &str, users: &[&str]) -> Envelope {
        Envelope {
            instance: instance.into(),
            events: users
                .iter()
                .map(|u| Event::Kick {
                    user: (*u).into(),
                    token_hash: "h".into(),
                })
                .collect(),
        }
    }

    fn deliver(user: &str, frame_bytes: usize) -> Event {
        Event::Deliver(Delivery {
            user: user.into(),
            frame: "\"".repeat(frame_bytes / 2).into(),
            except: None,
            message: true,
        })
    }

    fn events(limits: Limits) -> impl Fn(Vec<(u16, Envelope)>) -> Vec<(u16, Envelope)> {
        move |batch| {
            let c = coalesce(batch, limits);
            assert!(c.oversized.is_empty());
            c.messages
        }
    }

    const FEW: Limits = Limits {
        max_events: 512,
        max_bytes: usize::MAX,
    };

    #[test]
    fn coalesce_merges_per_node_in_order() {
        let batch = vec![
            (8760, kicks("i1", &["a"])),
            (8770, kicks("i2", &["b"])),
            (8760, kicks("i1", &["c", "d"])),
            (8770, kicks("i2", &["e"])),
        ];
        assert_eq!(
            events(FEW)(batch),
            vec![
                (8760, kicks("i1", &["a", "c", "d"])),
                (8770, kicks("i2", &["b", "e"])),
            ]
        );
    }

    #[test]
    fn coalesce_keeps_runs_apart_and_bounds_messages() {
        // A node that restarted (new instance) gets a separate envelope, after
        // the one for its previous run.
        let batch = vec![
            (8760, kicks("old", &["a"])),
            (8760, kicks("new", &["b"])),
            (8760, kicks("new", &["c"])),
        ];
        assert_eq!(
            events(FEW)(batch),
            vec![
                (8760, kicks("old", &["a"])),
                (8760, kicks("new", &["b", "c"]))
            ]
        );
        let batch = vec![
            (8760, kicks("i", &["a", "b"])),
            (8760, kicks("i", &["c", "d"])),
            (8760, kicks("i", &["e"])),
        ];
        let three = Limits {
            max_events: 3,
            ..FEW
        };
        assert_eq!(
            events(three)(batch),
            vec![
                (8760, kicks("i", &["a", "b"])),
                (8760, kicks("i", &["c", "d", "e"]))
            ]
        );
        // An envelope over the event bound on its own is split.
        assert_eq!(
            events(three)(vec![(8760, kicks("i", &["a", "b", "c", "d"]))]),
            vec![
                (8760, kicks("i", &["a", "b", "c"])),
                (8760, kicks("i", &["d"]))
            ]
        );
    }

    #[test]
    fn coalesce_bounds_messages_in_encoded_bytes() {
        // Deliveries of about 5 KB of JSON each (every quote escaped) under
        // a 64 KiB bound: envelopes of 1 to 15 of them for two nodes, the
        // biggest over the bound on their own.
        let limits = Limits {
            max_events: 512,
            max_bytes: 64 << 10,
        };
        let mut batch = Vec::new();
        let mut sent: HashMap<u16, Vec<Event>> = HashMap::new();
        for i in 0..60 {
            let port = 8760 + 10 * (i % 2) as u16;
            let events: Vec<Event> = (0..1 + i % 15)
                .map(|j| deliver(&format!("u{i}-{j}"), 5_000 + 37 * j))
                .collect();
            sent.entry(port).or_default().extend(events.clone());
            batch.push((
                port,
                Envelope {
                    instance: format!("run-{port}"),
                    events,
                },
            ));
        }
        let total: usize = batch
            .iter()
            .map(|(_, e)| serde_json::to_vec(e).unwrap().len())
            .sum();
        let c = coalesce(batch, limits);
        assert!(c.oversized.is_empty());
        let mut got: HashMap<u16, Vec<Event>> = HashMap::new();
        for (port, envelope) in &c.messages {
            let bytes = serde_json::to_vec(envelope).unwrap().len();
            assert!(bytes <= limits.max_bytes, "{bytes} bytes");
            got.entry(*port)
                .or_default()
                .extend(envelope.events.clone());
        }
        // Nothing lost, nothing reordered, and still coalesced: fewer
        // messages than envelopes (an envelope joins a message whole or
        // starts a new one).
        assert_eq!(got, sent);
        assert!(c.messages.len() >= total.div_ceil(limits.max_bytes));
        assert!(c.messages.len() < 60, "{} messages", c.messages.len());
    }

    #[test]
    fn coalesce_counts_sizes_exactly() {
        // A message exactly at the bound is allowed, one byte over is not.
        let one = kicks("i", &["a"]);
        let two = kicks("i", &["a", "b"]);
        let exact = serde_json::to_vec(&two).unwrap().len();
        let at = Limits {
            max_events: 512,
            max_bytes: exact,
        };
        let c = coalesce(vec![(1, one.clone()), (1, kicks("i", &["b"]))], at);
        assert_eq!(c.messages, vec![(1, two.clone())]);
        let under = Limits {
            max_bytes: exact - 1,
            ..at
        };
        let c = coalesce(vec![(1, one.clone()), (1, kicks("i", &["b"]))], under);
        assert_eq!(c.messages, vec![(1, one), (1, kicks("i", &["b"]))]);
        let c = coalesce(vec![(1, two.clone())], under);
        assert_eq!(
            c.messages,
            vec![(1, kicks("i", &["a"])), (1, kicks("i", &["b"]))]
        );
    }

    #[test]
    fn an_event_too_big_for_any_message_is_dropped_and_reported() {
        let limits = Limits {
            max_events: 512,
            max_bytes: 4096,
        };
        let big = deliver("bob", 8000);
        let batch = vec![(
            8760,
            Envelope {
                instance: "i".into(),
                events: vec![deliver("al", 10), big.clone(), deliver("cy", 10)],
            },
        )];
        let c = coalesce(batch, limits);
        let alone = serde_json::to_vec(&Envelope {
            instance: "i".into(),
            events: vec![big],
        })
        .unwrap()
        .len();
        assert_eq!(c.oversized, vec![(8760, alone)]);
        assert_eq!(
            c.messages,
            vec![(
                8760,
                Envelope {
                    instance: "i".into(),
                    events: vec![deliver("al", 10), deliver("cy", 10)],
                }
            )]
        );
    }

    #[test]
    fn the_broker_bound_is_below_rabbitmqs_default_message_size() {
        const RABBITMQ_4_MAX_MESSAGE_SIZE: usize = 16 << 20;
        const { assert!(MAX_MESSAGE_BYTES < RABBITMQ_4_MAX_MESSAGE_SIZE) };
    }
}
