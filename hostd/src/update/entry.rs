//! systemd-boot entries of the slots: `/efi/loader/entries/horcrux-<slot>
//! [+LEFT[-DONE]].conf`.
//!
//! systemd-boot sorts entries with the same `sort-key` by `version`,
//! newest first, and moves entries whose boot counter reached 0 to the
//! end. Each install gets a `version` one higher than any horcrux entry
//! before it, so the newly written slot is booted next and the other
//! slot's entry is the fallback. The counter in the name is systemd-boot's
//! boot counting: it renames `+3` to `+2-1` when it starts a try, and an
//! entry is good once something renames it without the counter.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::Slot;
use super::manifest::Manifest;

/// The `sort-key` shared by every horcrux entry.
pub const SORT_KEY: &str = "horcrux";
const PREFIX: &str = "horcrux-";
const SUFFIX: &str = ".conf";
/// An entry is a few lines; a larger file is not ours.
const MAX_ENTRY_LEN: u64 = 16 * 1024;

/// systemd-boot's boot counter in an entry's file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counter {
    /// Tries left.
    pub left: u32,
    /// Tries done.
    pub done: u32,
}

/// What the counter says about an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum BootState {
    /// No counter: blessed, or written without one.
    Good,
    /// Being tried.
    Trial { left: u32, done: u32 },
    /// Every try failed: systemd-boot boots it last.
    Bad { done: u32 },
}

impl std::fmt::Display for BootState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootState::Good => f.write_str("good"),
            BootState::Trial { left, done } => write!(f, "trial ({left} tries left, {done} done)"),
            BootState::Bad { .. } => f.write_str("bad (no tries left: fell back)"),
        }
    }
}

impl Counter {
    pub fn state(counter: Option<Counter>) -> BootState {
        match counter {
            None => BootState::Good,
            Some(Counter { left: 0, done }) => BootState::Bad { done },
            Some(Counter { left, done }) => BootState::Trial { left, done },
        }
    }
}

/// Splits the boot counter off any entry file name:
/// `x+2-1.conf` -> (`x.conf`, 2 left, 1 done). None without a counter.
pub fn split_counter(name: &str) -> Option<(String, Counter)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (base, counter) = stem.rsplit_once('+')?;
    let (left, done) = match counter.split_once('-') {
        Some((left, done)) => (left, Some(done)),
        None => (counter, None),
    };
    let number = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok()
    };
    let counter = Counter {
        left: number(left)?,
        done: done.map_or(Some(0), number)?,
    };
    if base.is_empty() {
        return None;
    }
    Some((format!("{base}{SUFFIX}"), counter))
}

/// A horcrux entry's file name, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryName {
    pub slot: Slot,
    pub counter: Option<Counter>,
}

impl EntryName {
    /// `horcrux-b.conf`, `horcrux-b+3.conf`, `horcrux-b+2-1.conf`; None
    /// for any other name.
    pub fn parse(name: &str) -> Option<EntryName> {
        let (base, counter) = match split_counter(name) {
            Some((base, counter)) => (base, Some(counter)),
            None => (name.to_string(), None),
        };
        let letter = base.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        Some(EntryName {
            slot: Slot::from_letter(letter)?,
            counter,
        })
    }

    /// The name of a new entry with `tries` boot tries.
    pub fn file_name(slot: Slot, tries: u8) -> String {
        format!("{PREFIX}{}+{tries}{SUFFIX}", slot.letter())
    }
}

/// Whether an entry file belongs to `slot`: `horcrux-<slot>.conf` or
/// `horcrux-<slot>+*.conf`, even when what follows `+` is no counter
/// (such a file would still be booted as the slot).
pub fn belongs_to(name: &str, slot: Slot) -> bool {
    let own = format!("{PREFIX}{}", slot.letter());
    name.strip_prefix(&own)
        .is_some_and(|rest| rest == SUFFIX || (rest.starts_with('+') && rest.ends_with(SUFFIX)))
}

/// Whether a file name is a horcrux entry (for `version` numbers).
fn is_horcrux_conf(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// The `version` of an entry's text; 0 when absent or not an integer.
pub fn entry_seq(text: &str) -> u64 {
    field(text, "version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The value of the first `key value` line of an entry.
pub fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, value) = line.trim_start().split_once([' ', '\t'])?;
        (k == key).then(|| value.trim())
    })
}

/// The `version` for a new entry: one more than any horcrux entry's.
pub fn next_seq<'a>(existing: impl IntoIterator<Item = &'a str>) -> u64 {
    existing.into_iter().map(entry_seq).max().unwrap_or(0) + 1
}

/// What goes into a new entry.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<'a> {
    pub slot: Slot,
    pub seq: u64,
    /// The slot partition's PARTUUID (lowercase).
    pub partuuid: &'a str,
    pub manifest: &'a Manifest,
}

/// The text of a new entry.
pub fn entry_text(new: &NewEntry) -> String {
    let m = new.manifest;
    let slot = new.slot.letter();
    let uuid = new.partuuid;
    let mut options = format!(
        "root=/dev/mapper/root rootfstype={} ro roothash={} \
         systemd.verity_root_data=PARTUUID={uuid} systemd.verity_root_hash=PARTUUID={uuid} \
         systemd.verity_root_options=hash-offset={} horcrux.slot={slot} horcrux.image={}",
        m.root.fstype.as_str(),
        m.root.verity_root_hash,
        m.root.verity_hash_offset,
        m.image_id,
    );
    if !m.cmdline.is_empty() {
        options.push(' ');
        options.push_str(&m.cmdline);
    }
    let mut text = String::new();
    let _ = writeln!(text, "title Horcrux {} (slot {})", m.version, new.slot);
    let _ = writeln!(text, "version {}", new.seq);
    let _ = writeln!(text, "sort-key {SORT_KEY}");
    let _ = writeln!(text, "linux /horcrux/{slot}/vmlinuz");
    let _ = writeln!(text, "initrd /horcrux/{slot}/initrd.img");
    let _ = writeln!(text, "options {options}");
    text
}

/// A horcrux entry found on the ESP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub file: String,
    pub slot: Slot,
    pub title: Option<String>,
    pub seq: u64,
    #[serde(flatten)]
    pub state: BootState,
    #[serde(skip)]
    pub counter: Option<Counter>,
}

/// systemd-boot's order among horcrux entries: entries with no tries
/// left last, then the highest `version` first (then by name, to be
/// deterministic).
pub fn boot_order(a: &Entry, b: &Entry) -> Ordering {
    let bad = |e: &Entry| matches!(e.state, BootState::Bad { .. });
    bad(a)
        .cmp(&bad(b))
        .then(b.seq.cmp(&a.seq))
        .then(b.file.cmp(&a.file))
}

/// The files of the entries directory (names only; a missing directory
/// has none).
pub fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Reads an entry file's text, capped; None if it is not readable text.
fn read_entry(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_ENTRY_LEN).read_to_string(&mut text))
        .ok()?;
    Some(text)
}

/// The `version` a new entry in `dir` gets.
pub fn next_seq_in(dir: &Path) -> io::Result<u64> {
    let texts: Vec<String> = list_dir(dir)?
        .into_iter()
        .filter(|name| is_horcrux_conf(name))
        .filter_map(|name| read_entry(&dir.join(name)))
        .collect();
    Ok(next_seq(texts.iter().map(String::as_str)))
}

/// The horcrux entries of `dir`, in boot order.
pub fn read_entries(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = list_dir(dir)?
        .into_iter()
        .filter_map(|file| {
            let name = EntryName::parse(&file)?;
            let text = read_entry(&dir.join(&file)).unwrap_or_default();
            Some(Entry {
                slot: name.slot,
                title: field(&text, "title").map(str::to_string),
                seq: entry_seq(&text),
                state: Counter::state(name.counter),
                counter: name.counter,
                file,
            })
        })
        .collect();
    entries.sort_by(boot_order);
    Ok(entries)
}

#[cfg(test)]
mod tests;
