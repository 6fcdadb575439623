//! Declares one half's outcomes from a single table: the enum, its counters, the public
//! snapshot's fields and the names that tracing events and metrics use.
//!
//! Each half of the crate counts how its work ended (a close, a request body) in exactly
//! one outcome. Written out by hand, one outcome lived in about eight places per half
//! (enum, name, counter, the match that picks it, the snapshot, its field, the sum and the
//! metrics); with the table, adding one is a line of the table plus the code that ends
//! in it.

/// Declares `enum $Outcome` (with `ALL` and `as_str`, the field name), a
/// `$Counters` type with one atomic counter per outcome, and the public snapshot
/// `$Stats` with one `u64` field per outcome followed by the extra fields given.
macro_rules! outcome_table {
    (
        $(#[$outcome_meta:meta])*
        enum $Outcome:ident;
        $(#[$counters_meta:meta])*
        struct $Counters:ident;
        $(#[$stats_meta:meta])*
        pub struct $Stats:ident {
            outcomes {
                $( $(#[$doc:meta])* $Variant:ident => $field:ident, )+
            }
            $( $(#[$extra_doc:meta])* pub $extra:ident: $extra_ty:ty, )*
        }
    ) => {
        $(#[$outcome_meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(crate) enum $Outcome {
            $( $Variant, )+
        }

        impl $Outcome {
            /// Every outcome, in the order of the table.
            pub(crate) const ALL: &'static [Self] = &[$( Self::$Variant, )+];

            /// The name of the outcome in tracing events and metric labels: the field name.
            pub(crate) const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$Variant => stringify!($field), )+
                }
            }
        }

        $(#[$counters_meta])*
        #[derive(Default)]
        pub(crate) struct $Counters([std::sync::atomic::AtomicU64; $Outcome::ALL.len()]);

        impl $Counters {
            /// Counts one more `outcome`.
            pub(crate) fn add(&self, outcome: $Outcome) {
                self.0[outcome as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }

            /// Every count, in the order of the table.
            pub(crate) fn load(&self) -> [u64; $Outcome::ALL.len()] {
                std::array::from_fn(|i| self.0[i].load(std::sync::atomic::Ordering::Relaxed))
            }
        }

        $(#[$stats_meta])*
        pub struct $Stats {
            $( $(#[$doc])* pub $field: u64, )+
            $( $(#[$extra_doc])* pub $extra: $extra_ty, )*
        }

        impl $Stats {
            /// The snapshot's value for `outcome`.
            pub(crate) const fn get(&self, outcome: $Outcome) -> u64 {
                match outcome {
                    $( $Outcome::$Variant => self.$field, )+
                }
            }

            /// Every outcome with its count, in the order of the table.
            pub(crate) fn outcomes(&self) -> impl Iterator<Item = ($Outcome, u64)> + '_ {
                $Outcome::ALL.iter().map(move |&outcome| (outcome, self.get(outcome)))
            }

            /// A snapshot made of `counts` (in the order of the table) and the rest.
            pub(crate) const fn from_counts(
                counts: [u64; $Outcome::ALL.len()],
                $( $extra: $extra_ty, )*
            ) -> Self {
                let [$( $field, )+] = counts;
                Self { $( $field, )+ $( $extra, )* }
            }

            /// The sum of the outcome counters.
            fn sum_of_outcomes(&self) -> u64 {
                self.outcomes().fold(0, |sum, (_, n)| sum.saturating_add(n))
            }
        }
    };
}

pub(crate) use outcome_table;
