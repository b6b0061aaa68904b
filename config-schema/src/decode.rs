//! Typed decoding of parsed TOML that reports *every* problem in a file.
//!
//! serde stops at the first error in a document. Operators want all of them
//! at once, so each file kind reads its table key by key through [`Table`],
//! which records errors and carries on; unknown keys are reported with a
//! "did you mean" hint when the table is finished.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};
use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostics, did_you_mean};
use crate::source::{FileId, Span};

/// A parsed TOML value with its byte range.
pub type Raw<'i> = toml::Spanned<DeValue<'i>>;

/// A value together with where it was written.
///
/// Equality, ordering and hashing look at the value only, so moving a line
/// around in a file never shows up as a change.
#[derive(Clone, Copy)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }

    /// A built-in default, not written in any file. [`Table::or_default`]
    /// relocates it to the table it was filled into.
    pub fn builtin(value: T) -> Self {
        Spanned::new(value, Span::new(FileId::BUILTIN, 0..0))
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned::new(f(self.value), self.span)
    }
}

impl<T> Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<T: Eq> Eq for Spanned<T> {}

impl<T: PartialOrd> PartialOrd for Spanned<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.value.partial_cmp(&other.value)
    }
}
impl<T: Ord> Ord for Spanned<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

impl<T: Hash> Hash for Spanned<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// Why a string could not become a typed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub message: String,
    pub hint: Option<String>,
}

impl ValueError {
    pub fn new(message: impl Into<String>) -> Self {
        ValueError {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

/// Decoding state for one file: where errors go and which file spans refer to.
#[derive(Debug)]
pub struct Cx<'d> {
    pub file: FileId,
    pub diags: &'d mut Diagnostics,
}

impl Cx<'_> {
    pub fn span(&self, raw: &Raw<'_>) -> Span {
        Span::new(self.file, raw.span())
    }

    pub fn error(&mut self, raw: &Raw<'_>, err: ValueError) {
        let span = self.span(raw);
        match err.hint {
            Some(hint) => self.diags.error_with_hint(span, err.message, hint),
            None => self.diags.error(span, err.message),
        }
    }

    fn wrong_type(&mut self, raw: &Raw<'_>, expected: &str) {
        let found = raw.get_ref().type_str();
        self.error(
            raw,
            ValueError::new(format!("expected {expected}, found {}", article(found))),
        );
    }
}

fn article(type_name: &str) -> String {
    let an = matches!(type_name.chars().next(), Some('a' | 'e' | 'i' | 'o' | 'u'));
    format!("{} {type_name}", if an { "an" } else { "a" })
}

/// A value that can be read from TOML, recording its own errors.
pub trait Decode: Sized {
    fn decode(raw: &Raw<'_>, cx: &mut Cx<'_>) -> Option<Self>;
}

/// A value written as a TOML string (names, sizes, addresses, ...).
pub trait ParseStr: Sized {
    /// What the value is, for messages such as "expected a size".
    const EXPECTED: &'static str;
    fn parse_str(s: &str) -> Result<Self, ValueError>;
}

/// Implements [`Decode`] for types read from a TOML string via [`ParseStr`].
#[macro_export]
macro_rules! decode_from_str {
    ($($ty:ty),+ $(,)?) => {$(
        impl $crate::decode::Decode for $ty {
            fn decode(raw: &$crate::decode::Raw<'_>, cx: &mut $crate::decode::Cx<'_>) -> Option<Self> {
                $crate::decode::decode_str(raw, cx)
            }
        }
    )+};
}

pub fn decode_str<T: ParseStr>(raw: &Raw<'_>, cx: &mut Cx<'_>) -> Option<T> {
    let Some(s) = raw.get_ref().as_str() else {
        cx.wrong_type(raw, T::EXPECTED);
        return None;
    };
    T::parse_str(s).map_err(|e| cx.error(raw, e)).ok()
}

impl ParseStr for String {
    const EXPECTED: &'static str = "a string";
    fn parse_str(s: &str) -> Result<Self, ValueError> {
        Ok(s.to_string())
    }
}
decode_from_str!(String);

impl Decode for bool {
    fn decode(raw: &Raw<'_>, cx: &mut Cx<'_>) -> Option<Self> {
        let b = raw.get_ref().as_bool();
        if b.is_none() {
            cx.wrong_type(raw, "a boolean (true or false)");
        }
        b
    }
}

/// An integer within `MIN..=MAX`, checked when read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    pub fn new(n: u64) -> Result<Self, ValueError> {
        if (MIN..=MAX).contains(&n) {
            Ok(Bounded(n))
        } else {
            Err(ValueError::new(format!(
                "{n} is out of range: must be between {MIN} and {MAX}"
            )))
        }
    }

    /// For constants: out-of-range values fail to compile when used in a
    /// `const` item.
    pub const fn checked(n: u64) -> Self {
        assert!(n >= MIN && n <= MAX, "constant out of range");
        Bounded(n)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Display for Bounded<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MIN: u64, const MAX: u64> Decode for Bounded<MIN, MAX> {
    fn decode(raw: &Raw<'_>, cx: &mut Cx<'_>) -> Option<Self> {
        let Some(int) = raw.get_ref().as_integer() else {
            cx.wrong_type(raw, "an integer");
            return None;
        };
        let parsed = i128::from_str_radix(int.as_str(), int.radix()).ok();
        let result = match parsed.map(u64::try_from) {
            Some(Ok(n)) => Self::new(n),
            _ => Err(ValueError::new(format!(
                "{} is out of range: must be between {MIN} and {MAX}",
                int.as_str()
            ))),
        };
        result.map_err(|e| cx.error(raw, e)).ok()
    }
}

impl<const MIN: u64, const MAX: u64> JsonSchema for Bounded<MIN, MAX> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        format!("Integer_{MIN}_{MAX}").into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({ "type": "integer", "minimum": MIN, "maximum": MAX })
    }
}

impl<T: Decode> Decode for Spanned<T> {
    fn decode(raw: &Raw<'_>, cx: &mut Cx<'_>) -> Option<Self> {
        let span = cx.span(raw);
        T::decode(raw, cx).map(|v| Spanned::new(v, span))
    }
}

/// Arrays decode every element, so one bad element does not hide the others.
impl<T: Decode> Decode for Vec<T> {
    fn decode(raw: &Raw<'_>, cx: &mut Cx<'_>) -> Option<Self> {
        let Some(items) = raw.get_ref().as_array() else {
            cx.wrong_type(raw, "an array");
            return None;
        };
        let decoded: Vec<Option<T>> = items.iter().map(|item| T::decode(item, cx)).collect();
        decoded.into_iter().collect()
    }
}

/// Tables with free-form keys (`[uplinks]`, `env`).
impl<K: ParseStr + Ord, V: Decode> Decode for BTreeMap<Spanned<K>, Spanned<V>> {
    fn decode(raw: &Raw<'_>, cx: &mut Cx<'_>) -> Option<Self> {
        let Some(table) = raw.get_ref().as_table() else {
            cx.wrong_type(raw, "a table");
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (key, value) in table.iter() {
            let key_span = Span::new(cx.file, key.span());
            let k = K::parse_str(key.get_ref()).map_err(|e| {
                let hint = e.hint.unwrap_or_default();
                cx.diags.error_with_hint(key_span, e.message, hint);
            });
            let v = Spanned::<V>::decode(value, cx);
            match (k, v) {
                (Ok(k), Some(v)) => {
                    out.insert(Spanned::new(k, key_span), v);
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// Reads the keys of one TOML table, collecting errors, and reports the
/// keys nobody asked for when finished.
#[derive(Debug)]
pub struct Table<'a, 'i, 'd> {
    entries: &'a DeTable<'i>,
    span: Span,
    cx: &'a mut Cx<'d>,
    known: Vec<&'static str>,
}

impl<'a, 'i, 'd> Table<'a, 'i, 'd> {
    /// Starts reading `raw` as a table; records an error if it is not one.
    pub fn open(raw: &'a Raw<'i>, cx: &'a mut Cx<'d>) -> Option<Self> {
        let span = cx.span(raw);
        match raw.get_ref().as_table() {
            Some(entries) => Some(Table {
                entries,
                span,
                cx,
                known: Vec::new(),
            }),
            None => {
                cx.wrong_type(raw, "a table");
                None
            }
        }
    }

    /// Where the table is; values filled in by default point here.
    pub fn span(&self) -> Span {
        self.span
    }

    /// The decoding context, for checks that span several keys.
    pub fn cx(&mut self) -> &mut Cx<'d> {
        self.cx
    }

    fn raw(&mut self, key: &'static str) -> Option<&'a Raw<'i>> {
        self.known.push(key);
        self.entries.get(key)
    }

    /// The value of an optional key; `None` when absent or invalid (the
    /// error is already recorded then).
    pub fn optional<T: Decode>(&mut self, key: &'static str) -> Option<Spanned<T>> {
        let raw = self.raw(key)?;
        Spanned::<T>::decode(raw, self.cx)
    }

    /// The value of a key that must be present.
    pub fn required<T: Decode>(&mut self, key: &'static str) -> Option<Spanned<T>> {
        match self.raw(key) {
            Some(raw) => Spanned::<T>::decode(raw, self.cx),
            None => {
                self.cx
                    .diags
                    .error(self.span, format!("missing required key `{key}`"));
                None
            }
        }
    }

    /// The value of a key, or `default` (located at the table) when absent.
    /// An invalid value records its error and also yields the default, so
    /// that checking can go on; the tree is invalid either way.
    pub fn or_default<T: Decode>(
        &mut self,
        key: &'static str,
        default: impl FnOnce() -> Spanned<T>,
    ) -> Spanned<T> {
        self.optional(key)
            .unwrap_or_else(|| Spanned::new(default().value, self.span))
    }

    /// A sub-table such as `[status]`; when absent it is read as an empty
    /// table at this table's position, so its defaults apply and point here.
    pub fn section<T: Decode>(&mut self, key: &'static str) -> Option<T> {
        match self.raw(key) {
            Some(raw) => T::decode(raw, self.cx),
            None => {
                let empty = toml::Spanned::new(self.span.range(), DeValue::Table(DeTable::new()));
                T::decode(&empty, self.cx)
            }
        }
    }

    /// Like [`Table::or_default`] for collections: absent means empty.
    pub fn list<T: Decode + Default>(&mut self, key: &'static str) -> T {
        self.optional::<T>(key).map(|s| s.value).unwrap_or_default()
    }

    /// Whether the key is written at all (valid or not).
    pub fn has(&self, key: &str) -> bool {
        self.entries.get(key).is_some()
    }

    /// Records an error at a key's value if it is written (used for keys
    /// that only apply to some kinds).
    pub fn forbid(&mut self, key: &'static str, message: impl Into<String>) {
        self.known.push(key);
        if let Some(raw) = self.entries.get(key) {
            let span = self.cx.span(raw);
            self.cx.diags.error(span, message);
        }
    }

    /// Reports every key that no reader asked for.
    pub fn finish(self) {
        for (key, _) in self.entries.iter() {
            let name: &str = key.get_ref();
            if self.known.contains(&name) {
                continue;
            }
            let span = Span::new(self.cx.file, key.span());
            let hint = did_you_mean(name, self.known.iter().copied()).unwrap_or_else(|| {
                let mut keys = self.known.clone();
                keys.sort_unstable();
                keys.dedup();
                format!("known keys here: {}", keys.join(", "))
            });
            self.cx
                .diags
                .error_with_hint(span, format!("unknown key `{name}`"), hint);
        }
    }
}

/// The value of a table type when nothing is written: used to describe
/// defaults in the JSON Schema, through `Default` impls of sections.
pub fn builtin_defaults<T: Decode>() -> Option<T> {
    let mut diags = Diagnostics::default();
    let mut cx = Cx {
        file: FileId::BUILTIN,
        diags: &mut diags,
    };
    let empty = toml::Spanned::new(0..0, DeValue::Table(DeTable::new()));
    T::decode(&empty, &mut cx)
}

/// Implements [`Decode`] for a struct read as a table by `$read`, a
/// `fn(&mut Table) -> Option<Self>`.
#[macro_export]
macro_rules! decode_table {
    ($ty:ty, $read:path) => {
        impl $crate::decode::Decode for $ty {
            fn decode(
                raw: &$crate::decode::Raw<'_>,
                cx: &mut $crate::decode::Cx<'_>,
            ) -> Option<Self> {
                let mut table = $crate::decode::Table::open(raw, cx)?;
                let value = $read(&mut table);
                table.finish();
                value
            }
        }
    };
}
