//! Closed sets of words (`state = "running"`, `kind = "zfs"`).

/// Declares an enum written in TOML as one of a fixed set of strings, with
/// its decoder, serializer and JSON Schema generated from the one list.
#[macro_export]
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            pub const ALL: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::decode::ParseStr for $name {
            const EXPECTED: &'static str = concat!("one of" $(, " \"", $text, "\"")+);
            fn parse_str(s: &str) -> Result<Self, $crate::decode::ValueError> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::decode::ValueError::new(format!("unknown value \"{s}\""))
                        .hint($crate::diagnostic::expected_one_of(s, Self::ALL))),
                }
            }
        }
        $crate::decode_from_str!($name);

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "enum": Self::ALL })
            }
        }
    };
}
