//! Regression cases: every input that ever failed, one file each, replayed
//! by the test command. A case is text, so a diff shows what was added:
//!
//! ```text
//! # what failed, when, and how it was found
//! entry: xdp
//! settings: answering=1 nxdomain=1
//! frame: 0200000000010200...
//! ```
//!
//! or, for the userspace server's request handling:
//!
//! ```text
//! # ...
//! entry: server
//! udp: 1
//! message: 1a2b8100...
//! ```
//!
//! Manifests that failed are kept byte for byte as `<hash>.yaml` (what
//! failed goes in the commit that adds them, or a comment written by hand
//! where it cannot change the outcome).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

use super::{
    oracle::hex,
    target::{EntryPoint, Settings},
};

pub enum Input {
    /// A frame through the program at an entry point.
    Kernel {
        entry: EntryPoint,
        settings: Settings,
        frame: Vec<u8>,
    },
    /// A message into `Server::handle`.
    Server { udp: bool, message: Vec<u8> },
    /// A manifest text into `parse_manifests` (and the record table).
    Manifest { text: String },
}

pub struct Case {
    pub path: PathBuf,
    pub input: Input,
}

/// The corpus in the source tree, beside the test that replays it
/// (hsdns/tests/fuzz-corpus).
pub fn dir() -> PathBuf {
    // This crate sits in hsdns/test-support.
    let hsdns = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("hsdns/test-support has a parent");
    hsdns.join("tests/fuzz-corpus")
}

/// Every case in `dir`, in name order.
pub fn load(dir: &Path) -> Result<Vec<Case>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "case" || e == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| parse(p)).collect()
}

fn parse(path: &Path) -> Result<Case> {
    if path.extension().is_some_and(|e| e == "yaml") {
        // Read as bytes: a failing manifest need not be UTF-8.
        let bytes = fs::read(path).with_context(|| format!("{}", path.display()))?;
        return Ok(Case {
            path: path.to_path_buf(),
            input: Input::Manifest {
                text: String::from_utf8_lossy(&bytes).into_owned(),
            },
        });
    }
    let text = fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let (mut entry, mut settings, mut bytes, mut udp) = (None, None, None, None);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let (k, v) = line
            .split_once(':')
            .with_context(|| format!("{}: expected `key: value`", at()))?;
        let v = v.trim();
        match k.trim() {
            "entry" => entry = Some(v.to_string()),
            "settings" => settings = Some(v.parse::<Settings>().with_context(at)?),
            "frame" | "message" => bytes = Some(unhex(v).with_context(at)?),
            "udp" => udp = Some(v == "1"),
            other => bail!("{}: unknown key {other:?}", at()),
        }
    }
    let bytes = bytes.with_context(|| format!("{}: no frame or message", path.display()))?;
    let input = match entry.as_deref() {
        Some("server") => Input::Server {
            udp: udp.with_context(|| format!("{}: no udp", path.display()))?,
            message: bytes,
        },
        other => Input::Kernel {
            entry: other.unwrap_or("xdp").parse()?,
            settings: settings.with_context(|| format!("{}: no settings", path.display()))?,
            frame: bytes,
        },
    };
    Ok(Case {
        path: path.to_path_buf(),
        input,
    })
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        bail!("odd number of hex digits");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("hex"))
        .collect()
}

/// Writes a case (named by its content, so a second find of the same
/// input adds no file) and returns its path.
pub fn save(dir: &Path, input: &Input, note: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let body = match input {
        Input::Kernel {
            entry,
            settings,
            frame,
        } => format!(
            "entry: {entry}\nsettings: {settings}\nframe: {}\n",
            hex(frame)
        ),
        Input::Server { udp, message } => format!(
            "entry: server\nudp: {}\nmessage: {}\n",
            u8::from(*udp),
            hex(message)
        ),
        Input::Manifest { text } => text.clone(),
    };
    let ext = match input {
        Input::Manifest { .. } => "yaml",
        _ => "case",
    };
    // FNV-1a: stable across runs and Rust versions, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    let path = dir.join(format!("{h:016x}.{ext}"));
    if path.exists() {
        // Found before (or twice in one run): its first note stays.
        return Ok(path);
    }
    let mut text = String::new();
    // A manifest is kept byte for byte (a note would change the input).
    if !matches!(input, Input::Manifest { .. }) {
        for l in note.lines() {
            text.push_str(&format!("# {l}\n"));
        }
    }
    text.push_str(&body);
    fs::write(&path, text).with_context(|| format!("{}", path.display()))?;
    Ok(path)
}
