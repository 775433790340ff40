//! Configuration: every flag, its default, and where limits come from.
//!
//! Flags come from the command line or, for deployments under systemd, from environment
//! variables named `SWITCHBOARD_<FLAG>` (`--max-connections` → `SWITCHBOARD_MAX_CONNECTIONS`;
//! repeatable flags take a comma-separated list). The command line wins over the environment.
//! Each flag is declared once (`flags.rs`): clap parses it, reads its variable and prints it
//! in `--help` (grouped by topic, with its default and variable) from the same attributes.

mod flags;
mod parsers;
mod redis_url;
mod values;

pub use flags::{command, parse};
pub use redis_url::{RedisTarget, RedisUrl};
pub use values::*;
