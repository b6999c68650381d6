//! JSON lines: one JSON value per line, the format of history and
//! final-state files.
//!
//! Reading is strict. A line that is not a valid value (a torn write from a
//! killed harness, a blank line, bad UTF-8) stops the read with its 1-based
//! line number: a checker that skipped it could pass a history it never
//! saw. Because nothing is skipped, item `i` of a read always came from line
//! `i + 1`.

use crate::final_state::{FinalState, ReplicaState};
use crate::history::Entry;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

/// Longest line accepted, in bytes. A replica's final state is one line, so
/// this bounds it too: 256 MiB holds millions of rows and reservations.
pub const LINE_BYTES_MAX: usize = 256 << 20;

/// Why a JSON-lines file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// A line is not a valid value of the expected type.
    #[error("{}line {line}: {why}", file_prefix(file))]
    Corrupt {
        /// The file, if read from one (empty otherwise).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
}

fn file_prefix(file: &str) -> String {
    if file.is_empty() {
        String::new()
    } else {
        format!("{file}: ")
    }
}

/// Reads every line of `reader` as a `T`, failing at the first bad line.
pub fn read_jsonl<T: DeserializeOwned, R: BufRead>(reader: R) -> Result<Vec<T>, JsonlError> {
    let mut items = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let corrupt = |why: String| JsonlError::Corrupt {
            file: String::new(),
            line: line_no,
            why,
        };
        let text = line.map_err(|e| corrupt(format!("unreadable: {e}")))?;
        if text.len() > LINE_BYTES_MAX {
            return Err(corrupt(format!(
                "{} bytes, longer than the {LINE_BYTES_MAX}-byte limit",
                text.len()
            )));
        }
        if text.trim().is_empty() {
            return Err(corrupt("blank line".into()));
        }
        items.push(serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?);
    }
    Ok(items)
}

/// Writes `items` one per line.
pub fn write_jsonl<'a, T: Serialize + 'a, W: Write>(
    mut writer: W,
    items: impl IntoIterator<Item = &'a T>,
) -> io::Result<()> {
    for item in items {
        serde_json::to_writer(&mut writer, item)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

/// Appends entries to a history as they happen. Each entry is one
/// `write` of a whole line, so a harness killed mid-run leaves at most one
/// torn last line, which the reader reports.
pub struct JsonlWriter<W: Write> {
    inner: W,
    line: Vec<u8>,
}

impl<W: Write> JsonlWriter<W> {
    /// A writer appending to `inner`.
    pub fn new(inner: W) -> Self {
        JsonlWriter {
            inner,
            line: Vec::new(),
        }
    }

    /// Writes one value as one line.
    pub fn append<T: Serialize>(&mut self, item: &T) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, item)?;
        self.line.push(b'\n');
        self.inner.write_all(&self.line)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn open(path: &Path) -> Result<BufReader<File>, JsonlError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| JsonlError::Io {
            path: path.display().to_string(),
            source,
        })
}

fn in_file(path: &Path, e: JsonlError) -> JsonlError {
    match e {
        JsonlError::Corrupt { line, why, .. } => JsonlError::Corrupt {
            file: path.display().to_string(),
            line,
            why,
        },
        other => other,
    }
}

/// Reads a history file.
pub fn read_history(path: &Path) -> Result<Vec<Entry>, JsonlError> {
    read_jsonl(open(path)?).map_err(|e| in_file(path, e))
}

/// Reads a final-state file (one replica per line).
pub fn read_final_state(path: &Path) -> Result<FinalState, JsonlError> {
    let replicas: Vec<ReplicaState> = read_jsonl(open(path)?).map_err(|e| in_file(path, e))?;
    Ok(FinalState { replicas })
}

/// Writes a file of JSON lines, for the harness and for tests.
pub fn write_file<'a, T: Serialize + 'a>(
    path: &Path,
    items: impl IntoIterator<Item = &'a T>,
) -> io::Result<()> {
    write_jsonl(BufWriter::new(File::create(path)?), items)
}
