//! Sink reader.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::*;

/// `kubernetes` enrichment of a record.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Kubernetes {
    pub pod_name: String,
    pub namespace_name: String,
    pub pod_id: String,
    pub host: String,
    pub container_name: String,
    pub docker_id: String,
}

/// One output record of the local sink.
#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    pub log: String,
    pub stream: String,
    pub time: String,
    pub kubernetes: Kubernetes,
}

#[derive(Default, Debug)]
struct SinkFile {
    offset: u64,
    records: Vec<Record>,
}

/// Incremental reader of the local sink's `*.jsonl` files (only complete lines are consumed).
#[derive(Debug)]
pub struct Sink {
    dir: PathBuf,
    files: BTreeMap<PathBuf, SinkFile>,
    bad: Vec<(PathBuf, String, String)>,
    total: usize,
}

impl Sink {
    pub fn new(dir: impl Into<PathBuf>) -> Sink {
        Sink {
            dir: dir.into(),
            files: BTreeMap::new(),
            bad: Vec::new(),
            total: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads newly completed lines; returns the new records (in file order, file by file).
    pub fn poll(&mut self) -> Vec<Record> {
        let mut paths = Vec::new();
        collect_jsonl(&self.dir, &mut paths);
        paths.sort();
        let mut new = Vec::new();
        for path in paths {
            let state = self.files.entry(path.clone()).or_default();
            let Ok(mut f) = File::open(&path) else {
                continue;
            };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            assert!(
                len >= state.offset,
                "sink file {} shrank from {} to {len} bytes",
                path.display(),
                state.offset
            );
            if len == state.offset {
                continue;
            }
            f.seek(SeekFrom::Start(state.offset)).expect("seek");
            let mut buf = Vec::new();
            f.take(len - state.offset)
                .read_to_end(&mut buf)
                .expect("read sink file");
            let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            for line in buf[..last_nl].split(|&b| b == b'\n') {
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Record>(line) {
                    Ok(r) => {
                        state.records.push(r.clone());
                        new.push(r);
                    }
                    Err(e) => self.bad.push((
                        path.clone(),
                        String::from_utf8_lossy(&line[..line.len().min(300)]).into_owned(),
                        e.to_string(),
                    )),
                }
            }
            state.offset += last_nl as u64 + 1;
        }
        self.total += new.len();
        new
    }

    /// All records read so far, file by file.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.files.values().flat_map(|f| f.records.iter())
    }

    /// Records of one sink file so far.
    pub fn file_records(&self, path: &Path) -> &[Record] {
        self.files.get(path).map(|f| &f.records[..]).unwrap_or(&[])
    }

    /// Paths of sink files seen so far.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(PathBuf::as_path)
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Lines that were not valid records: `(file, line prefix, error)`.
    pub fn bad_lines(&self) -> &[(PathBuf, String, String)] {
        &self.bad
    }

    /// Records of the container `name` (matched on `kubernetes.container_name`).
    pub fn records_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records()
            .filter(move |r| r.kubernetes.container_name == name)
    }
}

/// One local-sink record as raw JSON, for the fields [`Record`] does not have (`log_processed`,
/// the pod metadata in `kubernetes`), and its exact line.
#[derive(Clone, Debug)]
pub struct RawRecord {
    /// The sink file it is in.
    pub file: PathBuf,
    /// The record's line, without its newline.
    pub line: String,
    pub value: serde_json::Value,
}

impl RawRecord {
    /// `log`.
    pub fn log(&self) -> &str {
        self.value["log"].as_str().unwrap_or_default()
    }

    /// The `kubernetes` object.
    pub fn kubernetes(&self) -> &serde_json::Value {
        &self.value["kubernetes"]
    }

    /// `kubernetes.container_name`.
    pub fn container(&self) -> &str {
        self.kubernetes()["container_name"]
            .as_str()
            .unwrap_or_default()
    }

    /// `kubernetes.pod_id`.
    pub fn pod_id(&self) -> &str {
        self.kubernetes()["pod_id"].as_str().unwrap_or_default()
    }

    /// The sequence number of a sequenced line (`c=<name> seq=<n> …`).
    pub fn seq(&self) -> Option<u64> {
        parse_seq(self.log()).map(|(_, n)| n)
    }
}

/// Every complete record in the local sink under `dir` now, file by file (sorted by path), in
/// file order; panics on a line that is not JSON.
pub fn raw_records(dir: &Path) -> Vec<RawRecord> {
    let mut paths = Vec::new();
    collect_jsonl(dir, &mut paths);
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Ok(bytes) = fs::read(&path) else { continue };
        let complete = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(&bytes[..0], |i| &bytes[..i]);
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = String::from_utf8_lossy(line).into_owned();
            let value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: not a JSON record ({e}): {line}", path.display()));
            out.push(RawRecord {
                file: path.clone(),
                line,
                value,
            });
        }
    }
    out
}

impl Node {
    /// Every complete record in the local sink now ([`raw_records`]).
    pub fn raw_records(&self) -> Vec<RawRecord> {
        raw_records(&self.out_dir())
    }

    /// The records of container `name` (`kubernetes.container_name`) in the local sink now.
    pub fn raw_records_of(&self, name: &str) -> Vec<RawRecord> {
        let mut v = self.raw_records();
        v.retain(|r| r.container() == name);
        v
    }
}

fn collect_jsonl(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_jsonl(&p, out),
            Ok(t) if t.is_file() && p.extension() == Some(OsStr::new("jsonl")) => out.push(p),
            _ => {}
        }
    }
}
