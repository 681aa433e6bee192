//! The child→parent frame decoder (`process::Reader`) against a reference.
//!
//! The input: a flags byte (bit 0: the parent hands the child another task whenever the
//! reader says it is ready, as `Child::hand_on` does; bits 1..=4: how many chunk sizes
//! follow), the chunk sizes (one byte each, cycled; none: one chunk), then the bytes
//! the child wrote. A pipe delivers any split, so the reader must give the same outcome
//! for every one; the reference decodes the whole stream at once, from the protocol as
//! documented in `process::protocol` and `weft.h`.

use super::Input;
use crate::process::{ChildEvent, Reader};

/// A body's documented maximum: 16 MiB.
const MAX_BODY: usize = 16 << 20;

/// What the parent learns from a child's bytes.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// (status, result) of each task handed on (reuse).
    tasks: Vec<(Option<i32>, Vec<u8>)>,
    /// (topic, payload) of each event, in order.
    events: Vec<(Vec<u8>, Vec<u8>)>,
    /// A protocol error ended the stream; what follows is not compared.
    error: bool,
    /// The current task: its status, result and readiness (not compared after an error).
    status: Option<i32>,
    result: Vec<u8>,
    ready: bool,
}

/// Feeds the child's bytes to the real reader in the chosen splits and checks it
/// against the reference. Panics on a difference, or when the reader holds more memory
/// than the bytes it was given call for.
pub fn frames(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let reuse = flags & 1 != 0;
    let sizes: Vec<usize> = input.bytes(((flags >> 1) & 15) as usize).iter().map(|&b| b as usize + 1).collect();
    let stream = input.rest();

    let mut reader = Reader::default();
    let mut got = Outcome::default();
    let mut events = Vec::new();
    let (mut fed, mut ends) = (0, Vec::new());
    let mut size = sizes.iter().cycle();
    while fed < stream.len() {
        let n = size.next().copied().unwrap_or(stream.len()).min(stream.len() - fed);
        let result = reader.feed(&stream[fed..fed + n], &mut events);
        fed += n;
        // Buffers grow with the bytes that came, never with a length a header declares.
        assert!(
            reader.buffered() <= 2 * fed + 64,
            "the reader holds {} bytes after {fed} bytes of input",
            reader.buffered()
        );
        if result.is_err() {
            got.error = true;
            break;
        }
        ends.push(fed);
        if reuse && reader.is_ready() {
            got.tasks.push((reader.status(), reader.take_result()));
            reader.next_task();
        }
    }
    got.events = events.iter().map(split_event).collect();
    if !got.error {
        (got.status, got.result, got.ready) = (reader.status(), reader.take_result(), reader.is_ready());
    }
    let want = reference(stream, &ends, reuse);
    assert_eq!(got, want, "the reader and the reference disagree (splits {sizes:?}, reuse {reuse})");
}

fn split_event(event: &ChildEvent) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(event.bytes.get(event.topic_len), Some(&0), "an event's topic is not followed by its NUL");
    (event.bytes[..event.topic_len].to_vec(), event.bytes[event.topic_len + 1..].to_vec())
}

fn u32_at(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The protocol, decoded frame by frame from the whole stream. `ends` are the offsets
/// where a chunk ended (the parent may hand on a ready child only there).
fn reference(stream: &[u8], ends: &[usize], reuse: bool) -> Outcome {
    let mut out = Outcome::default();
    let mut at = 0;
    while at < stream.len() {
        if out.ready {
            // A child that is ready runs no task until the parent sends it one; any byte
            // before that is a protocol error.
            if !(reuse && ends.contains(&at)) {
                out.error = true;
                break;
            }
            out.tasks.push((out.status.take(), std::mem::take(&mut out.result)));
            out.ready = false;
        }
        let Some(header) = stream.get(at..at + 5) else { break };
        let (len, kind) = (u32_at(header) as usize, header[4]);
        let allowed = match kind {
            b'W' => out.status.is_none() && len <= MAX_BODY,
            b'E' => out.status.is_none() && (4..=MAX_BODY).contains(&len),
            b'S' => out.status.is_none() && len == 4,
            b'R' => out.status.is_some() && len == 0,
            _ => false,
        };
        if !allowed {
            out.error = true;
            break;
        }
        let body = &stream[at + 5..stream.len().min(at + 5 + len)];
        if kind == b'W' {
            out.result.extend_from_slice(body);
        }
        if body.len() < len {
            break; // the rest of the frame has not come yet
        }
        match kind {
            b'S' => out.status = Some(u32_at(body) as i32),
            b'R' => out.ready = true,
            b'E' => {
                let topic_len = u32_at(body) as usize;
                let Some(topic) = body[4..].get(..topic_len) else {
                    out.error = true;
                    break;
                };
                let valid = std::str::from_utf8(topic).is_ok()
                    && !topic.is_empty()
                    && !topic.contains(&b'*')
                    && !topic.contains(&0);
                if !valid {
                    out.error = true;
                    break;
                }
                out.events.push((topic.to_vec(), body[4 + topic_len..].to_vec()));
            }
            _ => {}
        }
        at += 5 + len;
    }
    if !out.error && out.ready && reuse {
        out.tasks.push((out.status.take(), std::mem::take(&mut out.result)));
        out.ready = false;
    }
    if out.error {
        (out.status, out.result, out.ready) = (None, Vec::new(), false);
    }
    out
}
