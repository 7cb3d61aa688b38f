//! Placeholder until the config loader lands.
use super::Config;
pub fn load() -> Option<Config> {
    None
}
