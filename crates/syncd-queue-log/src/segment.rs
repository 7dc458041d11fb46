//! Segment files: scanning (streaming, bounded memory), recovery, and the small fs helpers the writer uses.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::LogError;
use crate::format::{
    self, FormatError, RECORD_HEADER_LEN, RecordHeader, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use crate::index::LsnIndex;

/// What the log knows about one segment file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegMeta {
    /// Lsn of its first record (also its file name).
    pub(crate) first_lsn: u64,
    /// Lsn of its last record.
    pub(crate) last_lsn: u64,
    /// Bytes of valid data (header and complete records).
    pub(crate) size: u64,
}

impl SegMeta {
    pub(crate) fn path(&self, dir: &Path) -> PathBuf {
        segment_path(dir, self.first_lsn)
    }
}

pub(crate) fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format::segment_file_name(first_lsn))
}

/// Wraps an I/O error with what was being done and on which path.
pub(crate) fn io_error(what: &str, path: &Path, e: io::Error) -> LogError {
    LogError::Io(io::Error::new(
        e.kind(),
        format!("{what} {}: {e}", path.display()),
    ))
}

/// Counts fsyncs (and can be told to fail the next one, in unit tests).
#[derive(Debug, Default)]
pub(crate) struct Syncer {
    count: AtomicU64,
    #[cfg(test)]
    fail_next: std::sync::atomic::AtomicBool,
}

impl Syncer {
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn fail_next(&self) {
        self.fail_next.store(true, Ordering::SeqCst);
    }

    fn injected(&self) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        Ok(())
    }

    /// `fdatasync`: the data and the metadata needed to read it back (the size).
    pub(crate) fn sync_data(&self, file: &File, path: &Path) -> Result<(), LogError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.injected()
            .and_then(|()| file.sync_data())
            .map_err(|e| io_error("fdatasync", path, e))
    }

    /// `fsync`: data and all metadata.
    pub(crate) fn sync_all(&self, file: &File, path: &Path) -> Result<(), LogError> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.injected()
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("fsync", path, e))
    }

    /// fsyncs a directory, making entries created, renamed or removed in it durable.
    pub(crate) fn sync_dir(&self, dir: &Path) -> Result<(), LogError> {
        let file = File::open(dir).map_err(|e| io_error("open directory", dir, e))?;
        self.sync_all(&file, dir)
    }
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// At the end of the data, on a record boundary (or the visitor stopped).
    Clean,
    /// The data ends inside the segment header or a record: a partial write.
    Incomplete { offset: u64, reason: String },
    /// A complete record (or header) that is invalid.
    Invalid {
        offset: u64,
        error: FormatError,
        /// A valid record directly follows the invalid one: the damage is not a torn tail.
        followed_by_valid: bool,
    },
}

/// The result of scanning one segment.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Bytes up to the end of the last valid record visited (at least the header when the header is valid).
    pub(crate) valid_len: u64,
    pub(crate) end: ScanEnd,
}

/// A record seen by a scan.
pub(crate) struct Visit<'a> {
    pub(crate) offset: u64,
    pub(crate) header: RecordHeader,
    pub(crate) payload: &'a [u8],
}

/// Reads until `buf` is full or EOF; returns the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

enum Next {
    Record(RecordHeader),
    Eof,
    Incomplete(String),
    Invalid(FormatError),
}

/// Reads the next record into `payload` (header validated, CRC verified).
fn read_record(r: &mut impl Read, payload: &mut Vec<u8>) -> io::Result<Next> {
    let mut head = [0u8; RECORD_HEADER_LEN];
    let n = read_full(r, &mut head)?;
    if n == 0 {
        return Ok(Next::Eof);
    }
    if n < RECORD_HEADER_LEN {
        return Ok(Next::Incomplete(format!(
            "partial record header ({n} of {RECORD_HEADER_LEN} bytes)"
        )));
    }
    let header = RecordHeader::decode(&head);
    if let Err(e) = header.check_len() {
        return Ok(Next::Invalid(e));
    }
    payload.clear();
    payload.resize(header.len as usize, 0);
    let n = read_full(r, payload)?;
    if n < payload.len() {
        return Ok(Next::Incomplete(format!(
            "partial record payload ({n} of {} bytes)",
            header.len
        )));
    }
    Ok(match header.verify(payload) {
        Ok(()) => Next::Record(header),
        Err(e) => Next::Invalid(e),
    })
}

/// Streams through the segment at `path`, calling `visit` for each valid record in order, up to `limit` bytes
/// (the whole file when `None`). `visit` may stop the scan early or fail it.
pub(crate) fn scan(
    path: &Path,
    limit: Option<u64>,
    mut visit: impl FnMut(Visit<'_>) -> Result<ControlFlow<()>, LogError>,
) -> Result<Scan, LogError> {
    let file = File::open(path).map_err(|e| io_error("open", path, e))?;
    let read_err = |e| io_error("read", path, e);
    let mut r = BufReader::with_capacity(256 << 10, file.take(limit.unwrap_or(u64::MAX)));
    let mut magic = [0u8; SEGMENT_MAGIC.len()];
    let n = read_full(&mut r, &mut magic).map_err(read_err)?;
    if n < magic.len() {
        return Ok(Scan {
            valid_len: 0,
            end: ScanEnd::Incomplete {
                offset: 0,
                reason: format!("partial segment header ({n} of {} bytes)", magic.len()),
            },
        });
    }
    if let Err(error) = format::check_segment_header(&magic) {
        return Ok(Scan {
            valid_len: 0,
            end: ScanEnd::Invalid {
                offset: 0,
                error,
                // A bad magic is never a torn write: the header is synced before any record is written.
                followed_by_valid: true,
            },
        });
    }
    let mut offset = SEGMENT_HEADER_LEN;
    let mut payload = Vec::new();
    loop {
        match read_record(&mut r, &mut payload).map_err(read_err)? {
            Next::Eof => {
                return Ok(Scan {
                    valid_len: offset,
                    end: ScanEnd::Clean,
                });
            }
            Next::Incomplete(reason) => {
                return Ok(Scan {
                    valid_len: offset,
                    end: ScanEnd::Incomplete { offset, reason },
                });
            }
            Next::Invalid(error) => {
                // One record of lookahead: when only the payload (or CRC) of a record is damaged, the next record
                // still decodes, and that is damage in the middle of the data rather than a torn tail.
                let followed_by_valid = matches!(error, FormatError::CrcMismatch { .. })
                    && matches!(
                        read_record(&mut r, &mut payload).map_err(read_err)?,
                        Next::Record(_)
                    );
                return Ok(Scan {
                    valid_len: offset,
                    end: ScanEnd::Invalid {
                        offset,
                        error,
                        followed_by_valid,
                    },
                });
            }
            Next::Record(header) => {
                let flow = visit(Visit {
                    offset,
                    header,
                    payload: &payload,
                })?;
                offset += header.record_len();
                if flow.is_break() {
                    return Ok(Scan {
                        valid_len: offset,
                        end: ScanEnd::Clean,
                    });
                }
            }
        }
    }
}

/// The state of a log directory after recovery.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub(crate) segments: Vec<SegMeta>,
    pub(crate) index: LsnIndex,
}

/// Lists the segment files of `dir` as `(first lsn, path)`, sorted by lsn. Other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| io_error("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        let name = entry.file_name();
        match name.to_str().and_then(format::parse_segment_file_name) {
            Some(lsn) => out.push((lsn, entry.path())),
            None => {
                tracing::debug!(file = ?entry.path(), "ignoring a file that is not a log segment")
            }
        }
    }
    out.sort_unstable_by_key(|&(lsn, _)| lsn);
    Ok(out)
}

/// Scans every segment of `dir`, repairs a torn tail of the last one, and returns what the log holds.
///
/// A partial, absurd-length or CRC-failing record at the end of the last segment is what an interrupted write
/// leaves: it is cut off (the file is truncated and fsynced; a last segment left without records is removed).
/// Any other damage is [`LogError::Corrupt`].
pub(crate) fn recover(dir: &Path, syncer: &Syncer) -> Result<Recovered, LogError> {
    let files = list_segments(dir)?;
    let mut out = Recovered::default();
    let count = files.len();
    for (i, (name_lsn, path)) in files.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let mut seg_last: Option<u64> = None;
        let index = &mut out.index;
        let scanned = scan(&path, None, |v| {
            let corrupt = |reason: String| LogError::Corrupt {
                path: path.clone(),
                offset: v.offset,
                reason,
            };
            if seg_last.is_none() && v.header.lsn != name_lsn {
                return Err(corrupt(format!(
                    "first record has lsn {} but the segment is named for lsn {name_lsn}",
                    v.header.lsn
                )));
            }
            if let Some((last, _)) = index.last()
                && v.header.lsn <= last
            {
                return Err(corrupt(format!(
                    "lsn {} does not follow lsn {last}",
                    v.header.lsn
                )));
            }
            index.push(v.header.lsn, v.header.term);
            seg_last = Some(v.header.lsn);
            Ok(ControlFlow::Continue(()))
        })?;
        let corrupt = |offset: u64, reason: String| LogError::Corrupt {
            path: path.clone(),
            offset,
            reason,
        };
        match scanned.end {
            ScanEnd::Clean => {}
            ScanEnd::Incomplete { offset, reason } if is_last => {
                tracing::warn!(file = ?path, offset, %reason, "cutting a torn tail off the log");
                cut_tail(dir, &path, offset, syncer)?;
            }
            ScanEnd::Invalid {
                offset,
                error,
                followed_by_valid: false,
            } if is_last => {
                tracing::warn!(file = ?path, offset, %error, "cutting a torn tail off the log");
                cut_tail(dir, &path, offset, syncer)?;
            }
            ScanEnd::Incomplete { offset, reason } => {
                return Err(corrupt(
                    offset,
                    format!("{reason} in a segment that is not the last"),
                ));
            }
            ScanEnd::Invalid {
                offset,
                error,
                followed_by_valid,
            } => {
                let reason = if followed_by_valid && is_last {
                    format!("{error}, followed by valid records")
                } else {
                    error.to_string()
                };
                return Err(corrupt(offset, reason));
            }
        }
        match seg_last {
            Some(last_lsn) => out.segments.push(SegMeta {
                first_lsn: name_lsn,
                last_lsn,
                size: scanned.valid_len,
            }),
            None if is_last => {
                // Created (or cut back) but no record made it: as if the segment had never been created.
                if path.exists() {
                    tracing::warn!(file = ?path, "removing a last segment that holds no records");
                    fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
                    syncer.sync_dir(dir)?;
                }
            }
            None => return Err(corrupt(0, "segment holds no records".to_owned())),
        }
    }
    Ok(out)
}

/// Truncates the last segment to `offset` (removing it when no record remains), durably.
fn cut_tail(dir: &Path, path: &Path, offset: u64, syncer: &Syncer) -> Result<(), LogError> {
    if offset <= SEGMENT_HEADER_LEN {
        fs::remove_file(path).map_err(|e| io_error("remove", path, e))?;
        return syncer.sync_dir(dir);
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io_error("open", path, e))?;
    file.set_len(offset)
        .map_err(|e| io_error("truncate", path, e))?;
    syncer.sync_all(&file, path)
}

/// Opens an existing segment for appending.
pub(crate) fn open_for_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| io_error("open", path, e))
}

/// Creates a new segment holding only its header, durably (file and directory fsynced).
pub(crate) fn create_segment(
    dir: &Path,
    first_lsn: u64,
    syncer: &Syncer,
) -> Result<File, LogError> {
    use std::io::Write;
    let path = segment_path(dir, first_lsn);
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| io_error("create", &path, e))?;
    file.write_all(&SEGMENT_MAGIC)
        .map_err(|e| io_error("write", &path, e))?;
    syncer.sync_all(&file, &path)?;
    syncer.sync_dir(dir)?;
    Ok(file)
}

/// Removes a segment file durably (directory fsynced).
pub(crate) fn remove_segment(dir: &Path, seg: &SegMeta, syncer: &Syncer) -> Result<(), LogError> {
    let path = seg.path(dir);
    fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
    syncer.sync_dir(dir)
}
