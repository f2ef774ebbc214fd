//! Explaining a failed run from its events.
