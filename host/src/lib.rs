//! Burrow.
