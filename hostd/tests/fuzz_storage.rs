//! Property-based fuzzing of what the storage backend reads from outside:
//! `zfs list` / `zpool list` output, `qemu-img info` JSON and
//! `qemu-img convert -p` progress. Whatever the bytes, parsing must not
//! panic; what it accepts must come from the input. Starts from output
//! captured on the appliance (ZFS 2.1.11) and mutates it.
//! `PROPTEST_CASES=20000 cargo test -p horcrux-hostd --test fuzz_storage --release`
//! runs longer.

use horcrux_hostd::backend::storage::qemu_img::{parse_info, parse_progress};
use horcrux_hostd::backend::storage::zfs::{parse_pools, parse_zvols};
use proptest::prelude::*;

const ZFS_LIST: &str = include_str!("../src/backend/storage/fixtures/zfs-list-2.1.11.txt");
const ZPOOL_LIST: &str = include_str!("../src/backend/storage/fixtures/zpool-list-2.1.11.txt");
const QEMU_IMG_INFO: &str = r#"{"virtual-size": 67108864, "filename": "a.qcow2", "cluster-size": 65536,
 "format": "qcow2", "actual-size": 200704, "format-specific": {"type": "qcow2", "data": {}}, "dirty-flag": false}"#;

/// `text` with the `field`-th tab-separated field of line `line` (both
/// taken modulo what exists) replaced by `value`.
fn replace_field(text: &str, line: usize, field: usize, value: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return value.to_string();
    }
    let at = line % lines.len();
    let mut fields: Vec<&str> = lines[at].split('\t').collect();
    let f = field % fields.len();
    fields[f] = value;
    lines[at] = fields.join("\t");
    lines.join("\n") + "\n"
}

/// Field values that are close to what ZFS prints, and some that are not.
fn field_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-".to_string()),
        Just(String::new()),
        Just("18446744073709551616".to_string()),
        Just("tank/vms/vm-x-disk0@".to_string()),
        Just("@snap".to_string()),
        Just("\u{0}".to_string()),
        "[0-9]{0,25}",
        "[a-z/@:.-]{0,40}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn zfs_list_never_panics(text in any::<String>()) {
        let _ = parse_zvols(&text);
        let _ = parse_pools(&text);
    }

    #[test]
    fn mutated_zfs_list_is_parsed_or_refused(
        line in any::<usize>(),
        field in any::<usize>(),
        value in field_value(),
    ) {
        let text = replace_field(ZFS_LIST, line, field, &value);
        if let Ok(zvols) = parse_zvols(&text) {
            for zvol in &zvols {
                prop_assert!(text.contains(zvol.dataset.as_str()));
                for snapshot in &zvol.snapshots {
                    let full = format!("{}@{}", zvol.dataset, snapshot.name);
                    prop_assert!(text.contains(&full));
                }
            }
        }
        let pools = replace_field(ZPOOL_LIST, line, field, &value);
        if let Ok(parsed) = parse_pools(&pools) {
            for pool in &parsed {
                prop_assert!(pools.contains(pool.name.as_str()));
            }
        }
    }

    #[test]
    fn mutated_lines_are_dropped_or_refused_whole(cut in 0usize..2000, junk in any::<String>()) {
        let mut text = ZFS_LIST.to_string();
        let mut at = cut.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.insert_str(at, &junk);
        let _ = parse_zvols(&text);
    }

    #[test]
    fn qemu_img_info_never_panics(bytes in any::<Vec<u8>>(), cut in 0usize..400, junk in any::<String>()) {
        let _ = parse_info(&bytes);
        let mut json = QEMU_IMG_INFO.to_string();
        let mut at = cut.min(json.len());
        while !json.is_char_boundary(at) {
            at -= 1;
        }
        json.insert_str(at, &junk);
        if let Ok(info) = parse_info(json.as_bytes()) {
            prop_assert!(!info.format.is_empty());
        }
    }

    #[test]
    fn progress_is_a_percentage_or_nothing(text in any::<String>()) {
        if let Some(p) = parse_progress(&text) {
            prop_assert!((0.0..=100.0).contains(&p));
        }
    }
}

#[test]
fn the_captured_output_parses() {
    let zvols = parse_zvols(ZFS_LIST).unwrap();
    assert!(zvols.iter().any(|z| z.dataset == "tank/vms/vm-b-disk0"));
    assert_eq!(parse_pools(ZPOOL_LIST).unwrap()[0].health, "ONLINE");
    assert_eq!(
        parse_info(QEMU_IMG_INFO.as_bytes()).unwrap().virtual_size,
        64 << 20
    );
}
