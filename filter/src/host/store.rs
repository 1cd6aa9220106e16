//! The budget store: Envoy shared data (every worker's VM of this `vm_id` sees it), through the
//! non-panicking host calls, with its compare-and-swap tokens.

use super::abi;
use crate::budget::ledger::{Store, StoreError};
use std::cell::Cell;

/// Envoy shared data.
pub struct SharedData;

impl Store for SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        abi::get_shared_data(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        match abi::set_shared_data(key, value, cas) {
            abi::SetShared::Ok => Ok(()),
            abi::SetShared::CasMismatch => Err(StoreError::CasMismatch),
            abi::SetShared::Failed => Err(StoreError::Failed),
        }
    }
}

thread_local! {
    static HOLDER: Cell<u64> = const { Cell::new(0) };
}

/// This VM's non-zero id for the store's key-creation lock.
pub fn holder() -> u64 {
    HOLDER.with(|h| {
        if h.get() == 0 {
            h.set(u64::from_le_bytes(super::random::<8>()).max(1));
        }
        h.get()
    })
}
