//! A small server-sent-events parser: bytes in, complete events out.
//!
//! Written here rather than pulled in because the node's stream is simple (one JSON
//! `data:` line per event, keep-alive comments) and the parser must survive chunks that
//! split lines anywhere, which is easiest to prove on a pure type.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent, as the SSE spec says).
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental SSE parser (see the WHATWG "event stream interpretation").
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet terminated.
    pending: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    /// A `\r` ended the last chunk: a following `\n` belongs to the same line break.
    after_cr: bool,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &byte in chunk {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.after_cr = true;
                    self.end_line(&mut out);
                }
                _ => self.pending.push(byte),
            }
        }
        out
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                let event = self.event.take().unwrap_or_else(|| "message".to_string());
                out.push(SseEvent { event, data });
            }
            self.event = None;
            return;
        }
        if line.starts_with(':') {
            return; // A comment: the node's keep-alive.
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {} // `id`, `retry` and unknown fields do not matter to this client.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STREAM: &str = ": keep-alive\n\nevent: escrowed\ndata: {\"a\":1}\n\nevent: settled\r\ndata: x\r\ndata: y\r\n\r\ndata: plain\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            SseEvent {
                event: "escrowed".into(),
                data: "{\"a\":1}".into(),
            },
            SseEvent {
                event: "settled".into(),
                data: "x\ny".into(),
            },
            SseEvent {
                event: "message".into(),
                data: "plain".into(),
            },
        ]
    }

    #[test]
    fn parses_events_comments_crlf_and_multiline_data() {
        assert_eq!(SseParser::new().push(STREAM.as_bytes()), expected());
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"event: running\ndata: {}\n").is_empty());
        assert_eq!(parser.push(b"\n").len(), 1);
    }

    proptest! {
        /// However the transport splits the bytes, the same events come out.
        #[test]
        fn chunking_does_not_matter(cuts in proptest::collection::vec(0..STREAM.len(), 0..12)) {
            let bytes = STREAM.as_bytes();
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut parser = SseParser::new();
            let mut events = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                events.extend(parser.push(&bytes[start..cut]));
                start = cut;
            }
            prop_assert_eq!(events, expected());
        }
    }
}
