//! Helpers every record module uses to move values across the boundary.

/// Declares a foreign-API enum mirroring a till-core enum variant for
/// variant, with conversions both ways, so no till-core type reaches the
/// bindings and a variant added in core fails to compile here until mirrored.
macro_rules! mirror_enum {
    (
        $(#[$meta:meta])*
        $name:ident = $core:path {
            $($(#[$vmeta:meta])* $variant:ident),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl From<$core> for $name {
            fn from(value: $core) -> Self {
                type Core = $core;
                match value {
                    $(Core::$variant => $name::$variant),+
                }
            }
        }

        impl From<$name> for $core {
            fn from(value: $name) -> Self {
                type Core = $core;
                match value {
                    $($name::$variant => Core::$variant),+
                }
            }
        }
    };
}

pub(crate) use mirror_enum;

/// A page of a list: the items and the cursor of the next page.
pub(crate) fn page<T, U: From<T>>(page: till_core::Page<T>) -> (Vec<U>, Option<String>) {
    (page.items.into_iter().map(U::from).collect(), page.next)
}
