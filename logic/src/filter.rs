//! The chat word filter: a words file matched against client messages with
//! Aho-Corasick, masking the words it finds with `*` or rejecting the
//! message.
//!
//! It owns the words (loaded, reloaded on demand and when the file changes)
//! and the verdict on one body. The send path decides when to ask, answers
//! 422 for a rejection, and calls [`WordFilter::reload`] on SIGHUP.
//!
//! # Words file
//! UTF-8, one word or phrase per line, trimmed; blank lines and lines
//! starting with `#` are skipped, as is a leading byte order mark. Replace
//! the file atomically (write, then rename): a check that reads a
//! half-written file loads half the words until the next check sees the file
//! change again.
//!
//! # Matching
//! - ASCII letters match case-insensitively; every other character matches
//!   exactly (no Unicode case folding or normalization: `Ä` does not match
//!   `ä`, full-width letters do not match ASCII ones).
//! - Mask mode masks every occurrence of every word, overlapping ones
//!   included (words `abc` and `bcd` turn `abcd` into `****`). Each masked
//!   character becomes one `*`: characters, not bytes (`傻瓜` → `**`), as
//!   GoBelieve does.
//! - Reject mode names the leftmost word found (the longest one starting
//!   there), as written in the words file.
//!
//! # What is looked at
//! - `field` set (default `text`): the body must be a JSON object. Every
//!   top-level member named `field` whose value is a string is checked (all
//!   of them when the key is repeated, so a duplicate key cannot carry a word
//!   past the filter); the string is matched after JSON unescaping. Anything
//!   else is [`Verdict::Clean`]: a body that is not a JSON object, has no such
//!   member, or holds a non-string there. Nested paths are not supported. A
//!   masked body is written again from its members, in their order: values
//!   other than the masked strings are kept byte for byte, keys are escaped
//!   again and whitespace between members is dropped.
//! - `field = ""`: the whole body, as bytes. A body that is not UTF-8 is
//!   searched all the same (one invalid byte must not hide a word); bytes
//!   outside the words found are kept, so a masked body is valid UTF-8
//!   exactly when the original was. The body is text here, not JSON:
//!   escaped words (`\u0061`) are not seen, and masking a word that contains
//!   JSON syntax (`"`, `\`) can turn a JSON body into invalid JSON.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aho_corasick::{AhoCorasick, Input, MatchKind};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::LogicConfigError;

/// What the filter does with a message that contains a word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterAction {
    /// Replace each character of each word found with `*` and send the
    /// message (GoBelieve's convention). The default.
    #[default]
    Mask,
    /// Refuse the message (op 5 code 422).
    Reject,
}

impl FilterAction {
    /// The metrics label (`action`): `mask` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterAction::Mask => "mask",
            FilterAction::Reject => "reject",
        }
    }
}

/// Word filter settings (`[logic.chat.filter]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// The words file (format in the module docs); a relative path is
    /// resolved from the working directory. Default none: the filter is off
    /// and passes every message.
    pub words_file: Option<PathBuf>,
    /// `mask` (default) or `reject`.
    pub action: FilterAction,
    /// The top-level member of a JSON object body that is checked; the empty
    /// string checks the whole body as text. Default `text`.
    pub field: String,
    /// How often the words file's modification time and size are checked;
    /// the file is reloaded when either changed. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            words_file: None,
            action: FilterAction::Mask,
            field: "text".to_owned(),
            reload_interval: Duration::from_secs(2),
        }
    }
}

impl FilterConfig {
    /// Checks the settings without touching the file: an unreadable words
    /// file is a [`FilterError`] of [`WordFilter::load`].
    pub fn validate(&self) -> Result<(), LogicConfigError> {
        if self
            .words_file
            .as_deref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(LogicConfigError::Invalid {
                field: "chat.filter.words_file",
                reason: "must not be empty (leave it out to turn the filter off)".to_owned(),
            });
        }
        if self.reload_interval.is_zero() {
            return Err(LogicConfigError::Invalid {
                field: "chat.filter.reload_interval",
                reason: "must be greater than 0".to_owned(),
            });
        }
        Ok(())
    }
}

/// Why the words file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The file could not be read: missing, not permitted, a directory.
    #[error("cannot read words file {}: {source}", .path.display())]
    Read {
        /// The words file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// The file is not UTF-8.
    #[error("words file {} is not UTF-8 (line {line})", .path.display())]
    NotUtf8 {
        /// The words file.
        path: PathBuf,
        /// The first line (from 1) with an invalid byte.
        line: usize,
    },
    /// The words could not be compiled into a matcher (too many, too long).
    #[error("cannot build a matcher from words file {}: {source}", .path.display())]
    Build {
        /// The words file.
        path: PathBuf,
        /// Why Aho-Corasick refused them.
        #[source]
        source: aho_corasick::BuildError,
    },
}

/// The filter's answer for one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found, or nothing to look at: send the body as it is.
    Clean,
    /// Words were found and masked: send this body instead.
    Masked(Bytes),
    /// A word was found in reject mode: refuse the message.
    Rejected {
        /// The leftmost word found, as written in the words file.
        word: String,
    },
}

/// The word filter: the current words and the settings that apply them.
///
/// `Send + Sync`; share it as `Arc<WordFilter>`. [`check`](Self::check)
/// takes a read lock only to clone an `Arc`, so reloads never stall messages
/// for longer than that.
pub struct WordFilter {
    path: Option<PathBuf>,
    action: FilterAction,
    field: String,
    reload_interval: Duration,
    /// A reload swaps the `Arc`; a check clones it and searches without the
    /// lock. Cheap enough that arc-swap would buy nothing measurable.
    words: RwLock<Arc<Words>>,
    /// The file as it looked at the last load attempt (`None`: it could not
    /// be examined). Held across a whole reload so that two reloads (SIGHUP
    /// and `watch`) cannot interleave and store the older words last.
    seen: Mutex<Option<Fingerprint>>,
}

impl WordFilter {
    /// Reads the words file, if one is configured; without one, the filter
    /// passes every message. Blocking file I/O.
    pub fn load(config: &FilterConfig) -> Result<WordFilter, FilterError> {
        let (words, seen) = match &config.words_file {
            None => (Words::none(), None),
            Some(path) => {
                let seen = fingerprint(path);
                (read_words(path)?, seen)
            }
        };
        Ok(WordFilter {
            path: config.words_file.clone(),
            action: config.action,
            field: config.field.clone(),
            reload_interval: config.reload_interval,
            words: RwLock::new(Arc::new(words)),
            seen: Mutex::new(seen),
        })
    }

    /// A filter with `config`'s settings and no words yet (its file could
    /// not be read): everything passes until [`reload`](Self::reload) or
    /// [`watch`](Self::watch) reads the file.
    pub fn unloaded(config: &FilterConfig) -> WordFilter {
        WordFilter {
            path: config.words_file.clone(),
            action: config.action,
            field: config.field.clone(),
            reload_interval: config.reload_interval,
            words: RwLock::new(Arc::new(Words::none())),
            seen: Mutex::new(None),
        }
    }

    /// Whether a words file is configured.
    pub fn has_file(&self) -> bool {
        self.path.is_some()
    }

    /// How many distinct words are loaded.
    pub fn word_count(&self) -> usize {
        self.words.read().words.len()
    }

    /// The verdict on a message body (see the module docs for what is looked
    /// at). Counts `rim_logic_filter_hits_total{action}` for a body with at
    /// least one word.
    pub fn check(&self, body: &[u8]) -> Verdict {
        let words = Arc::clone(&self.words.read());
        let Some(matcher) = &words.matcher else {
            return Verdict::Clean;
        };
        let verdict = if self.field.is_empty() {
            self.check_text(matcher, &words.words, body)
        } else {
            self.check_field(matcher, &words.words, body)
        };
        if verdict != Verdict::Clean {
            metrics::counter!("rim_logic_filter_hits_total", "action" => self.action.as_str())
                .increment(1);
        }
        verdict
    }

    /// Reads the words file again now (SIGHUP). On error the previous words
    /// stay in force and the error is returned for the caller to log.
    /// Returns the number of words loaded, 0 when no file is configured.
    /// Blocking file I/O, and building the matcher of a large file takes
    /// milliseconds: call it from `spawn_blocking` in async code.
    pub fn reload(&self) -> Result<usize, FilterError> {
        let Some(path) = &self.path else {
            return Ok(0);
        };
        let mut seen = self.seen.lock();
        self.reload_locked(path, &mut seen)
    }

    /// Checks the words file every `reload_interval` and reloads it when its
    /// modification time or size changed, until `shutdown`. Logs each reload
    /// (`info`) and each failure (`warn`, previous words kept); a file that
    /// stays broken is reported once, not at every check. Returns at once
    /// when no file is configured.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let start = tokio::time::Instant::now() + self.reload_interval;
        let mut ticks = tokio::time::interval_at(start, self.reload_interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let filter = Arc::clone(&self);
            // Stat and read are blocking, and building a matcher can take
            // milliseconds: keep them off the runtime's workers.
            match tokio::task::spawn_blocking(move || filter.reload_if_changed()).await {
                Ok(None) => {}
                Ok(Some(Ok(count))) => {
                    tracing::info!(path = %path.display(), words = count, "word filter reloaded");
                }
                Ok(Some(Err(error))) => {
                    tracing::warn!(%error, "word filter reload failed; previous words kept");
                }
                Err(error) => {
                    tracing::warn!(%error, "word filter check failed; previous words kept");
                }
            }
        }
    }

    fn reload_if_changed(&self) -> Option<Result<usize, FilterError>> {
        let path = self.path.as_ref()?;
        let mut seen = self.seen.lock();
        if fingerprint(path) == *seen {
            return None;
        }
        Some(self.reload_locked(path, &mut seen))
    }

    fn reload_locked(
        &self,
        path: &Path,
        seen: &mut Option<Fingerprint>,
    ) -> Result<usize, FilterError> {
        // Taken before reading: a change made during the read shows up as a
        // new fingerprint at the next check, which reloads again.
        *seen = fingerprint(path);
        match read_words(path) {
            Ok(words) => {
                let count = words.words.len();
                *self.words.write() = Arc::new(words);
                metrics::counter!("rim_logic_filter_reloads_total", "result" => "ok").increment(1);
                Ok(count)
            }
            Err(error) => {
                metrics::counter!("rim_logic_filter_reloads_total", "result" => "error")
                    .increment(1);
                Err(error)
            }
        }
    }

    fn check_text(&self, matcher: &AhoCorasick, words: &[String], body: &[u8]) -> Verdict {
        match self.action {
            FilterAction::Reject => match first_word(matcher, words, body) {
                Some(word) => Verdict::Rejected { word },
                None => Verdict::Clean,
            },
            FilterAction::Mask => {
                let found = occurrences(matcher, body);
                if found.is_empty() {
                    Verdict::Clean
                } else {
                    Verdict::Masked(Bytes::from(mask(body, &found)))
                }
            }
        }
    }

    fn check_field(&self, matcher: &AhoCorasick, words: &[String], body: &[u8]) -> Verdict {
        let Ok(Members(members)) = serde_json::from_slice::<Members<'_>>(body) else {
            return Verdict::Clean;
        };
        let texts = members
            .iter()
            .enumerate()
            .filter_map(|(index, (key, value))| {
                if key.0 != self.field {
                    return None;
                }
                let text = serde_json::from_str::<Text<'_>>(value.get()).ok()?;
                Some((index, text.0))
            });
        match self.action {
            FilterAction::Reject => {
                for (_, text) in texts {
                    if let Some(word) = first_word(matcher, words, text.as_bytes()) {
                        return Verdict::Rejected { word };
                    }
                }
                Verdict::Clean
            }
            FilterAction::Mask => {
                let masked: Vec<(usize, Vec<u8>)> = texts
                    .filter_map(|(index, text)| {
                        let found = occurrences(matcher, text.as_bytes());
                        (!found.is_empty()).then(|| (index, mask(text.as_bytes(), &found)))
                    })
                    .collect();
                if masked.is_empty() {
                    return Verdict::Clean;
                }
                let mut out = Vec::with_capacity(body.len());
                out.push(b'{');
                let mut masked = masked.into_iter().peekable();
                for (index, (key, value)) in members.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    write_json_string(&mut out, key.0.as_bytes());
                    out.push(b':');
                    match masked.next_if(|(at, _)| *at == index) {
                        Some((_, text)) => write_json_string(&mut out, &text),
                        None => out.extend_from_slice(value.get().as_bytes()),
                    }
                }
                out.push(b'}');
                Verdict::Masked(Bytes::from(out))
            }
        }
    }
}

impl fmt::Debug for WordFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WordFilter")
            .field("path", &self.path)
            .field("action", &self.action)
            .field("field", &self.field)
            .field("reload_interval", &self.reload_interval)
            .field("words", &self.word_count())
            .finish()
    }
}

// === words ===

/// One generation of the words file.
struct Words {
    /// `None` when there are no words: nothing to search.
    matcher: Option<AhoCorasick>,
    /// The words as written in the file, indexed by pattern id.
    words: Vec<String>,
}

impl Words {
    fn none() -> Words {
        Words {
            matcher: None,
            words: Vec::new(),
        }
    }
}

fn read_words(path: &Path) -> Result<Words, FilterError> {
    let bytes = std::fs::read(path).map_err(|source| FilterError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        FilterError::NotUtf8 {
            path: path.to_owned(),
            line: 1 + valid.iter().filter(|&&byte| byte == b'\n').count(),
        }
    })?;
    let words = parse_words(&text);
    if words.is_empty() {
        return Ok(Words::none());
    }
    let matcher = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .build(&words)
        .map_err(|source| FilterError::Build {
            path: path.to_owned(),
            source,
        })?;
    Ok(Words {
        matcher: Some(matcher),
        words,
    })
}

/// The distinct words of a words file, in file order.
fn parse_words(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut distinct = HashSet::new();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|word| distinct.insert(*word))
        .map(str::to_owned)
        .collect()
}

/// The leftmost (then longest) word in `text`, as written in the file.
fn first_word(matcher: &AhoCorasick, words: &[String], text: &[u8]) -> Option<String> {
    let found = matcher.find(text)?;
    Some(match words.get(found.pattern().as_usize()) {
        Some(word) => word.clone(),
        // Pattern ids index the words the matcher was built from; this arm
        // only keeps a broken invariant from panicking.
        None => String::from_utf8_lossy(&text[found.range()]).into_owned(),
    })
}

/// Byte ranges covering every occurrence of every word in `text`: sorted,
/// disjoint, and starting and ending on character boundaries.
fn occurrences(matcher: &AhoCorasick, text: &[u8]) -> Vec<Range<usize>> {
    let mut found: Vec<Range<usize>> = Vec::new();
    let mut from = 0;
    // Each search resumes one byte after the last match's start, so every
    // position where a word starts is found with its longest word, overlaps
    // included. The words are UTF-8, so a match can only start on a character
    // boundary, whatever `from` is. Words are never empty, so `from` never
    // passes the end of `text`.
    while let Some(hit) = matcher.find(Input::new(text).range(from..)) {
        match found.last_mut() {
            Some(last) if hit.start() <= last.end => last.end = last.end.max(hit.end()),
            _ => found.push(hit.range()),
        }
        from = hit.start() + 1;
    }
    found
}

/// `text` with each character in `found` replaced by one `*`.
fn mask(text: &[u8], found: &[Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut kept = 0;
    for range in found {
        out.extend_from_slice(&text[kept..range.start]);
        // One `*` per character: count the bytes that start one (all but
        // UTF-8 continuation bytes).
        let chars = text[range.clone()]
            .iter()
            .filter(|&&byte| byte & 0xC0 != 0x80)
            .count();
        out.resize(out.len() + chars, b'*');
        kept = range.end;
    }
    out.extend_from_slice(&text[kept..]);
    out
}

/// Appends `text` (UTF-8) as a JSON string.
fn write_json_string(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &byte in text {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1F => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0F)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

// === the words file's identity ===

/// What `watch` compares to notice a changed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
}

/// `None` when the file cannot be examined (e.g. it was removed).
fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        modified: metadata.modified().ok(),
        len: metadata.len(),
    })
}

// === JSON bodies ===

/// A JSON object's members in order, values left unparsed.
struct Members<'a>(Vec<(Text<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;

        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor)
    }
}

/// A JSON string, borrowed from the body unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use tempfile::NamedTempFile;
    use tokio_util::sync::CancellationToken;

    use super::{FilterAction, FilterConfig, FilterError, Verdict, WordFilter};

    fn words_file(contents: &[u8]) -> NamedTempFile {
        let mut file = NamedTempFile::new().expect("temp file");
        file.write_all(contents).expect("write words");
        file
    }

    fn config(path: &Path, action: FilterAction, field: &str) -> FilterConfig {
        FilterConfig {
            words_file: Some(path.to_owned()),
            action,
            field: field.to_owned(),
            ..FilterConfig::default()
        }
    }

    /// A filter over `words`, checking `field` with `action`; keep the file alive.
    fn filter(words: &str, action: FilterAction, field: &str) -> (NamedTempFile, WordFilter) {
        let file = words_file(words.as_bytes());
        let filter = WordFilter::load(&config(file.path(), action, field)).expect("load");
        (file, filter)
    }

    fn masked(verdict: Verdict) -> String {
        match verdict {
            Verdict::Masked(body) => String::from_utf8(body.to_vec()).expect("UTF-8"),
            other => panic!("expected Masked, got {other:?}"),
        }
    }

    #[test]
    fn masks_words_in_the_field_case_insensitively() {
        let (_file, filter) = filter("fool\n", FilterAction::Mask, "text");
        let body = br#"{"to":1,"text":"you FOOL, Fool","n":1.50,"text2":"fool"}"#;
        assert_eq!(
            masked(filter.check(body)),
            r#"{"to":1,"text":"you ****, ****","n":1.50,"text2":"fool"}"#
        );
    }

    #[test]
    fn masks_multibyte_words_one_star_per_character() {
        let (_file, filter) = filter("傻瓜\nÄrger\n", FilterAction::Mask, "text");
        assert_eq!(
            masked(filter.check(r#"{"text":"你是傻瓜吗 Ärger"}"#.as_bytes())),
            r#"{"text":"你是**吗 *****"}"#
        );
        // Only ASCII folds case.
        assert_eq!(
            filter.check(r#"{"text":"ärger"}"#.as_bytes()),
            Verdict::Clean
        );
    }

    #[test]
    fn masks_overlapping_words_entirely() {
        let (_file, filter) = filter("abc\nbcdef\nab\nxy\nyz\n", FilterAction::Mask, "text");
        assert_eq!(
            masked(filter.check(br#"{"text":"-abcdefg- xyz"}"#)),
            r#"{"text":"-******g- ***"}"#
        );
    }

    #[test]
    fn masks_words_at_the_start_and_end() {
        let (_file, filter) = filter("bad\n", FilterAction::Mask, "text");
        assert_eq!(
            masked(filter.check(br#"{"text":"bad, not bad"}"#)),
            r#"{"text":"***, not ***"}"#
        );
        assert_eq!(
            masked(filter.check(br#"{"text":"bad"}"#)),
            r#"{"text":"***"}"#
        );
    }

    #[test]
    fn masks_every_member_with_the_field_name() {
        let (_file, filter) = filter("bad\n", FilterAction::Mask, "text");
        assert_eq!(
            masked(filter.check(br#"{"text":"ok","text":"bad"}"#)),
            r#"{"text":"ok","text":"***"}"#
        );
    }

    #[test]
    fn masking_keeps_other_members_and_json_escapes() {
        let (_file, filter) = filter("fool\n", FilterAction::Mask, "text");
        // The word is seen through an escape; the masked string is escaped
        // again; other values are kept byte for byte, keys escaped again.
        let body = br#" { "k\u0065y" : [1,  2.0e3] , "text":"say \"\u0066ool\"\n\u0001" } "#;
        assert_eq!(
            masked(filter.check(body)),
            r#"{"key":[1,  2.0e3],"text":"say \"****\"\n\u0001"}"#
        );
    }

    #[test]
    fn reject_names_the_word_as_written_in_the_file() {
        let (_file, filter) = filter("Fool\n傻瓜\n", FilterAction::Reject, "text");
        assert_eq!(
            filter.check(r#"{"text":"傻瓜 and FOOL"}"#.as_bytes()),
            Verdict::Rejected {
                word: "傻瓜".to_owned()
            }
        );
        assert_eq!(
            filter.check(br#"{"text":"a fool"}"#),
            Verdict::Rejected {
                word: "Fool".to_owned()
            }
        );
        assert_eq!(filter.check(br#"{"text":"fine"}"#), Verdict::Clean);
    }

    #[test]
    fn whole_body_mode_masks_the_text() {
        let (_file, filter) = filter("fool\n傻瓜\n", FilterAction::Mask, "");
        assert_eq!(
            masked(filter.check("Fool me, 傻瓜!".as_bytes())),
            "**** me, **!"
        );
        // Not UTF-8: still searched, other bytes kept.
        assert_eq!(
            filter.check(b"\xff fool \xfe"),
            Verdict::Masked(Bytes::from_static(b"\xff **** \xfe"))
        );
        assert_eq!(filter.check(b"fine"), Verdict::Clean);
    }

    #[test]
    fn whole_body_mode_rejects() {
        let (_file, filter) = filter("fool\n", FilterAction::Reject, "");
        assert_eq!(
            filter.check(br#"{"text":"FOOL"}"#),
            Verdict::Rejected {
                word: "fool".to_owned()
            }
        );
    }

    #[test]
    fn only_the_field_of_an_object_is_looked_at() {
        for action in [FilterAction::Mask, FilterAction::Reject] {
            let (_file, filter) = filter("bad\n", action, "text");
            for body in [
                &b"bad"[..],
                br#""bad""#,
                br#"["bad"]"#,
                br#"{"other":"bad"}"#,
                br#"{"text":["bad"]}"#,
                br#"{"text":{"text":"bad"}}"#,
                br#"{"text":"bad""#,
                br#"{"text":"bad"} trailing"#,
                b"",
            ] {
                assert_eq!(filter.check(body), Verdict::Clean, "{action:?} {body:?}");
            }
        }
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let (_file, filter) = filter(
            "\u{feff}# fool\n\n   \n  bad word  \r\n#x\nbad word\n",
            FilterAction::Mask,
            "text",
        );
        assert_eq!(filter.word_count(), 1);
        assert_eq!(
            masked(filter.check(br##"{"text":"# fool, bad word"}"##)),
            r##"{"text":"# fool, ********"}"##
        );
    }

    #[test]
    fn without_words_everything_passes() {
        let off = WordFilter::load(&FilterConfig::default()).expect("load");
        assert_eq!(off.check(br#"{"text":"anything"}"#), Verdict::Clean);
        assert_eq!(off.reload().expect("reload"), 0);
        let (_file, empty) = filter("# nothing\n\n", FilterAction::Reject, "");
        assert_eq!(empty.word_count(), 0);
        assert_eq!(empty.check(b"# nothing"), Verdict::Clean);
    }

    #[test]
    fn load_fails_on_an_unreadable_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.txt");
        let error = WordFilter::load(&config(&missing, FilterAction::Mask, "text"))
            .expect_err("missing file");
        assert!(matches!(error, FilterError::Read { .. }), "{error}");
        let file = words_file(b"ok\nbad \xff\n");
        let error = WordFilter::load(&config(file.path(), FilterAction::Mask, "text"))
            .expect_err("not UTF-8");
        assert!(
            matches!(error, FilterError::NotUtf8 { line: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn reload_picks_up_changes_and_keeps_words_on_failure() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("words.txt");
        std::fs::write(&path, "old\n").expect("write");
        let filter = WordFilter::load(&config(&path, FilterAction::Reject, "")).expect("load");
        let rejects =
            |text: &str| matches!(filter.check(text.as_bytes()), Verdict::Rejected { .. });
        assert!(rejects("old"));

        std::fs::write(&path, "new\nnewer\n").expect("write");
        assert_eq!(filter.reload().expect("reload"), 2);
        assert!(!rejects("old"));
        assert!(rejects("newer"));

        std::fs::remove_file(&path).expect("remove");
        assert!(matches!(filter.reload(), Err(FilterError::Read { .. })));
        assert!(rejects("new"), "previous words kept");

        std::fs::write(&path, b"\xffnot utf-8\n").expect("write");
        assert!(matches!(
            filter.reload(),
            Err(FilterError::NotUtf8 { line: 1, .. })
        ));
        assert!(rejects("new"), "previous words kept");
        assert_eq!(filter.word_count(), 2);
    }

    #[tokio::test]
    async fn watch_reloads_a_changed_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("words.txt");
        std::fs::write(&path, "old\n").expect("write");
        let filter = Arc::new(
            WordFilter::load(&FilterConfig {
                reload_interval: Duration::from_millis(20),
                ..config(&path, FilterAction::Reject, "")
            })
            .expect("load"),
        );
        let shutdown = CancellationToken::new();
        let watch = tokio::spawn(Arc::clone(&filter).watch(shutdown.clone()));

        let rejects =
            |text: &str| matches!(filter.check(text.as_bytes()), Verdict::Rejected { .. });
        // Removed: the old words stay.
        std::fs::remove_file(&path).expect("remove");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(rejects("old"));

        // Written again (atomically, as operators should): picked up.
        let staged = dir.path().join("words.txt.new");
        std::fs::write(&staged, "new\nnewer\n").expect("write");
        std::fs::rename(&staged, &path).expect("rename");
        rim_testkit::poll::eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            async || {
                if rejects("newer") && !rejects("old") {
                    Ok(())
                } else {
                    Err(format!("not reloaded: {filter:?}"))
                }
            },
        )
        .await;

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), watch)
            .await
            .expect("watch ends on shutdown")
            .expect("watch task");
    }

    #[test]
    fn config_defaults_and_validation() {
        let config: FilterConfig = toml::from_str("").expect("empty config");
        assert_eq!(config, FilterConfig::default());
        assert_eq!(config.field, "text");
        assert_eq!(config.action, FilterAction::Mask);
        assert_eq!(config.reload_interval, Duration::from_secs(2));
        config.validate().expect("defaults are valid");

        let config: FilterConfig = toml::from_str(
            "words_file = \"words.txt\"\naction = \"reject\"\nfield = \"\"\nreload_interval = \"500ms\"\n",
        )
        .expect("full config");
        assert_eq!(config.action, FilterAction::Reject);
        assert_eq!(config.reload_interval, Duration::from_millis(500));
        config.validate().expect("valid");

        assert!(toml::from_str::<FilterConfig>("action = \"drop\"").is_err());
        assert!(toml::from_str::<FilterConfig>("words = \"x\"").is_err());
        let zero = FilterConfig {
            reload_interval: Duration::ZERO,
            ..FilterConfig::default()
        };
        let error = zero.validate().expect_err("zero interval");
        assert!(
            error.to_string().contains("filter.reload_interval"),
            "{error}"
        );
        let empty = FilterConfig {
            words_file: Some("".into()),
            ..FilterConfig::default()
        };
        assert!(empty.validate().is_err());
    }

    /// Throughput of `check` on a 200-byte JSON body with 10k words:
    /// `cargo test -p rim-logic --release --lib filter::tests::check_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "measurement, prints ns per check"]
    fn check_throughput() {
        // Deterministic pseudo-random words, 4 to 10 lowercase letters.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut words = String::new();
        for _ in 0..10_000 {
            let len = 4 + next() % 7;
            for _ in 0..len {
                words.push(char::from(b'a' + (next() % 26) as u8));
            }
            words.push('\n');
        }
        words.push_str("fool\n");
        for (action, hit) in [
            (FilterAction::Mask, false),
            (FilterAction::Mask, true),
            (FilterAction::Reject, true),
        ] {
            let (_file, filter) = filter(&words, action, "text");
            let text = if hit { "fool" } else { "good" };
            let body = format!(
                r#"{{"to":1234567,"id":"c1e8b7a2-5d1f-4c3e-9f0a-7b6d5e4c3b2a","ts":1718000000000,"text":"hello there, {text}, how are you today? this is a chat message of roughly two hundred bytes, give or take a few."}}"#
            );
            let iterations = 100_000u32;
            let start = tokio::time::Instant::now();
            for _ in 0..iterations {
                std::hint::black_box(filter.check(std::hint::black_box(body.as_bytes())));
            }
            let per = start.elapsed() / iterations;
            println!(
                "{action:?} hit={hit} body={}B words={}: {} ns/check",
                body.len(),
                filter.word_count(),
                per.as_nanos()
            );
        }
    }
}
