//! Creating a VM's tap: a persistent TAP device made through
//! `/dev/net/tun`, the only way Linux creates one (rtnetlink refuses
//! `tun` links).
//!
//! hostd creates the tap before the VM starts and QEMU later opens the
//! same device by name (`-netdev tap,ifname=...,script=no,downscript=no`).
//! For that to work the tap is single-queue (QEMU asks for
//! `IFF_MULTI_QUEUE` only with `queues=` > 1, and the kernel refuses a
//! mismatch) and of type TAP; `IFF_NO_PI` and `IFF_VNET_HDR` are what QEMU
//! sets anyway (the flags of whoever attaches replace them). Being
//! persistent, it survives hostd closing its descriptor, QEMU restarts and
//! hostd restarts, until hostd deletes it with RTM_DELLINK.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::ioctl::{IntegerSetter, Opcode, Updater, ioctl, opcode};

use crate::backend::naming::MAX_IFNAME;

/// `<linux/if_tun.h>`: a TAP (Ethernet) device, no packet information
/// header, a virtio-net header on each frame.
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;

/// `TUNSETIFF` and `TUNSETPERSIST`: `_IOW('T', 202, int)` and
/// `_IOW('T', 203, int)` (the "int" size is historical: TUNSETIFF reads a
/// whole `struct ifreq`).
const TUNSETIFF: Opcode = opcode::write::<i32>(b'T', 202);
const TUNSETPERSIST: Opcode = opcode::write::<i32>(b'T', 203);

const TUN_DEVICE: &str = "/dev/net/tun";

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("`{0}` is not a valid interface name")]
    Name(String),
    #[error("cannot open {TUN_DEVICE}: {0}")]
    Open(#[source] std::io::Error),
    #[error("cannot create tap {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags in the
/// first bytes of a 24-byte union (the kernel copies all 40 bytes).
#[repr(C)]
struct IfReq {
    name: [u8; MAX_IFNAME + 1],
    flags: i16,
    _union_rest: [u8; 22],
}

/// Creates persistent tap `name`, down and without master; the caller
/// configures it over rtnetlink. Blocks only for two ioctls.
pub fn create(name: &str) -> Result<(), TapError> {
    if name.is_empty() || name.len() > MAX_IFNAME || name.bytes().any(|b| b == 0) {
        return Err(TapError::Name(name.to_string()));
    }
    let mut req = IfReq {
        name: [0; MAX_IFNAME + 1],
        flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
        _union_rest: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open(TUN_DEVICE)
        .map_err(TapError::Open)?;
    // Closing `tun` afterwards detaches hostd; persistence keeps the tap.
    make_persistent_tap(tun.as_fd(), &mut req).map_err(|e| TapError::Create {
        name: name.to_string(),
        source: e.into(),
    })
}

#[allow(unsafe_code)]
fn make_persistent_tap(tun: BorrowedFd<'_>, req: &mut IfReq) -> rustix::io::Result<()> {
    // SAFETY: `tun` is an open /dev/net/tun descriptor; TUNSETIFF reads
    // and writes back a `struct ifreq`, whose layout and 40-byte size
    // `IfReq` reproduces (name[16], then the flags at the start of the
    // union), and `req` outlives the call.
    unsafe { ioctl(tun, Updater::<TUNSETIFF, IfReq>::new(req))? };
    // SAFETY: TUNSETPERSIST takes its argument by value as an integer
    // (1: persist), never as a pointer.
    unsafe { ioctl(tun, IntegerSetter::<TUNSETPERSIST>::new_usize(1)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_has_the_kernel_size_and_opcodes_their_values() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(TUNSETIFF, 0x4004_54ca);
        assert_eq!(TUNSETPERSIST, 0x4004_54cb);
    }

    #[test]
    fn bad_names_are_refused_before_any_ioctl() {
        for name in ["", "abcdefghijklmnop", "a\0b"] {
            assert!(matches!(create(name), Err(TapError::Name(_))), "{name:?}");
        }
    }
}
