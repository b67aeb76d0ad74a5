//! What an enricher prints: each line as JSON or `key=value` text, to standard output.

use std::io::Write;

use serde_json::{Map, Value};

use super::{
    enrich::Enriched,
    pipeline::{Sink, fields_of},
    text,
};

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One JSON object per line.
    Json,
    /// `key=value` text (escaped: see [`text`]).
    Text,
}

/// Writes lines as JSON or text. Buffered by the caller: a following reader flushes whenever
/// its source has nothing more queued.
pub struct Output<W: Write> {
    pub out: W,
    /// One line's JSON, reused.
    line: Vec<u8>,
    format: OutputFormat,
}

impl<W: Write> Output<W> {
    pub fn new(out: W, format: OutputFormat) -> Self {
        Self {
            out,
            line: Vec::with_capacity(1024),
            format,
        }
    }
}

// Each line, newline included, is handed to the writer in one call: with [`SharedStdout`]
// behind a BufWriter, lines of two enrichers (the daemon's kernel source and its `--audit-log`
// follower) are never cut into each other.
impl<W: Write> Sink for Output<W> {
    fn enriched(&mut self, line: &Enriched) -> std::io::Result<()> {
        self.line.clear();
        match self.format {
            OutputFormat::Json => line.write_json(&mut self.line),
            OutputFormat::Text => self
                .line
                .extend_from_slice(text::render(&fields_of(line)).as_bytes()),
        }
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    fn fields(&mut self, line: &Map<String, Value>) -> std::io::Result<()> {
        self.line.clear();
        match self.format {
            OutputFormat::Json => serde_json::to_writer(&mut self.line, line)?,
            OutputFormat::Text => self.line.extend_from_slice(text::render(line).as_bytes()),
        }
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }
}

/// Standard output taken for each write only, and written whole under it: several enrichers
/// in one process share it (holding `stdout().lock()` for a whole run, as this once did,
/// blocked the daemon's second enricher forever).
pub struct SharedStdout;

impl Write for SharedStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().lock().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}
