//! Names of the offline push feed's consumer group (DESIGN.md, "Offline
//! push"). Every chat-node run with a webhook reads the stream
//! [`crate::Keys::push_stream`] as one consumer of [`GROUP`], named like its
//! archive consumer ([`crate::archive::consumer_name`]), so the operator
//! removes both for a run that is gone.

/// The consumer group every pusher of a cluster reads the feed in.
pub const GROUP: &str = "pushers";
