//! What one deployment may use per call: memory, wall-clock time, optionally fuel.
//!
//! Memory is enforced by [`MemoryCap`], a `ResourceLimiter` that turns a growth past the cap
//! into a trap *and remembers that it did*: wasmtime's own error for this is a plain message,
//! and the host must tell "ran out of its memory budget" from any other trap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Per-deployment limits, checked on every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory, in bytes, one instance may grow to.
    pub memory: u64,
    /// The wall-clock budget of one call, whatever the guest does: running code or blocked in
    /// a WASI call (see [`PluginInstance`](crate::wasm::PluginInstance)). May overrun by about
    /// one epoch tick (5 ms) plus the time to unwind the guest.
    pub timeout: Duration,
    /// Fuel (roughly, wasm instructions) per call; `None` means unmetered.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    /// 64 MiB, 5 s, no fuel: generous for a message transform, small enough that a runaway
    /// plugin cannot starve the host.
    fn default() -> Self {
        Self {
            memory: 64 * 1024 * 1024,
            timeout: Duration::from_secs(5),
            fuel: None,
        }
    }
}

/// A tenant's claim on the plugin executor's threads (see `wasm::fair`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cpu {
    /// Its share of the threads when tenants contend for them, relative to the others'
    /// weights. A tenant alone may use every idle thread whatever its weight.
    pub weight: u32,
    /// A hard cap, in cores (0.25: a quarter of one core's time), held even when nothing else
    /// runs. None by default.
    pub cores: Option<f64>,
}

impl Default for Cpu {
    /// Weight 1, no cap.
    fn default() -> Self {
        Self::weighted(1)
    }
}

impl Cpu {
    /// Weight `weight`, no cap.
    pub fn weighted(weight: u32) -> Self {
        Self {
            weight,
            cores: None,
        }
    }
}

/// When a worker replaces its instance with a fresh one although nothing failed. A guest whose
/// memory only grows (a garbage-collected language keeps its heap) stays inside its cap this
/// way; and state a plugin keeps between messages starts over. Never, by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recycle {
    /// After the instance has processed this many messages.
    pub after_messages: Option<u64>,
    /// Once the instance's linear memory (all of its memories) has grown past this many bytes.
    pub above_memory: Option<u64>,
}

impl Recycle {
    /// Whether an instance that has processed `messages` and holds `memory` bytes is due.
    pub fn due(&self, messages: u64, memory: u64) -> bool {
        self.after_messages.is_some_and(|n| messages >= n)
            || self.above_memory.is_some_and(|bytes| memory > bytes)
    }
}

/// Tables hold function references; a guest growing one without bound would eat host memory
/// the memory cap does not see. A Rust plugin needs a few hundred entries.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The linear memory of a group of instances — a tenant's, through its deployment slot —
/// counted as they grow and given back as they are dropped: what a tenant's plugin holds, for
/// `/metrics` and the tenant's memory budget.
#[derive(Clone, Debug, Default)]
pub struct MemoryAccount(Arc<AtomicU64>);

impl MemoryAccount {
    /// The bytes of linear memory its instances hold now.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The store's resource limiter: caps linear memory and records when the cap was hit.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    limit: usize,
    /// Set when a growth past `limit` was refused; read and cleared after each call.
    hit: bool,
    /// The instance's linear memory, all its memories together (they only grow).
    size: usize,
    /// Where its growth is counted; given back when the store drops it.
    account: MemoryAccount,
}

impl Drop for MemoryCap {
    fn drop(&mut self) {
        self.account
            .0
            .fetch_sub(self.size as u64, Ordering::Relaxed);
    }
}

/// The error that traps a guest growing past its cap (the limiter records the hit too).
#[derive(Debug, thiserror::Error)]
#[error("memory cap of {limit} bytes exceeded (tried to grow to {desired} bytes)")]
pub(crate) struct MemoryCapExceeded {
    limit: usize,
    desired: usize,
}

impl MemoryCap {
    /// A cap of `limit` bytes whose growth counts in `account`.
    pub(crate) fn new(limit: u64, account: MemoryAccount) -> Self {
        Self {
            account,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            hit: false,
            size: 0,
        }
    }

    /// The bytes of linear memory the instance holds now.
    pub(crate) fn size(&self) -> u64 {
        self.size as u64
    }

    /// Whether the cap was hit since the last call to this method.
    pub(crate) fn take_hit(&mut self) -> bool {
        std::mem::take(&mut self.hit)
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Err(MemoryCapExceeded {
                limit: self.limit,
                desired,
            }
            .into());
        }
        // The module's own declared maximum: an ordinary failed `memory.grow`, not our cap.
        let allowed = maximum.is_none_or(|max| desired <= max);
        if allowed {
            let grown = desired.saturating_sub(current);
            self.size += grown;
            self.account.0.fetch_add(grown as u64, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_cap_traps_and_is_recorded_once() {
        let mut cap = MemoryCap::new(1024, MemoryAccount::default());
        assert!(cap.memory_growing(0, 1024, None).is_ok_and(|ok| ok));
        assert!(!cap.take_hit());
        assert!(cap.memory_growing(1024, 2048, None).is_err());
        assert!(cap.take_hit());
        assert!(!cap.take_hit());
    }

    #[test]
    fn the_size_adds_up_every_memory() {
        let mut cap = MemoryCap::new(1 << 20, MemoryAccount::default());
        assert!(cap.memory_growing(0, 4096, None).is_ok_and(|ok| ok));
        assert!(cap.memory_growing(0, 1024, None).is_ok_and(|ok| ok));
        assert!(cap.memory_growing(4096, 8192, None).is_ok_and(|ok| ok));
        assert_eq!(cap.size(), 8192 + 1024);
        // Refused growths are not counted.
        assert!(cap.memory_growing(8192, 1 << 21, None).is_err());
        assert!(
            cap.memory_growing(1024, 4096, Some(2048))
                .is_ok_and(|ok| !ok)
        );
        assert_eq!(cap.size(), 8192 + 1024);
    }

    /// Instances sharing an account add their growth to it and give it back when dropped.
    #[test]
    fn an_account_holds_what_its_live_instances_grew_to() {
        let account = MemoryAccount::default();
        let mut a = MemoryCap::new(1 << 20, account.clone());
        let mut b = MemoryCap::new(1 << 20, account.clone());
        assert!(a.memory_growing(0, 65536, None).is_ok_and(|ok| ok));
        assert!(b.memory_growing(0, 4096, None).is_ok_and(|ok| ok));
        assert!(a.memory_growing(65536, 131_072, None).is_ok_and(|ok| ok));
        // Refused: past the cap, and past the module's own maximum.
        assert!(b.memory_growing(4096, 1 << 21, None).is_err());
        assert!(b.memory_growing(4096, 8192, Some(4096)).is_ok_and(|ok| !ok));
        assert_eq!(account.bytes(), 131_072 + 4096);
        drop(a);
        assert_eq!(account.bytes(), 4096);
        drop(b);
        assert_eq!(account.bytes(), 0);
    }

    #[test]
    fn recycling_is_due_past_either_mark() {
        let never = Recycle::default();
        assert!(!never.due(u64::MAX, u64::MAX));
        let both = Recycle {
            after_messages: Some(3),
            above_memory: Some(100),
        };
        assert!(!both.due(2, 100));
        assert!(both.due(3, 0));
        assert!(both.due(0, 101));
    }

    #[test]
    fn growth_past_the_modules_own_maximum_is_refused_without_a_trap() {
        let mut cap = MemoryCap::new(1 << 20, MemoryAccount::default());
        assert!(cap.memory_growing(0, 4096, Some(2048)).is_ok_and(|ok| !ok));
        assert!(!cap.take_hit());
    }
}
