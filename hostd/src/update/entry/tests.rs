use super::*;
use crate::update::manifest;

#[test]
fn entry_names() {
    let parse = EntryName::parse;
    let counted = |slot, left, done| {
        Some(EntryName {
            slot,
            counter: Some(Counter { left, done }),
        })
    };
    assert_eq!(parse("horcrux-b+3.conf"), counted(Slot::B, 3, 0));
    assert_eq!(parse("horcrux-b+2-1.conf"), counted(Slot::B, 2, 1));
    assert_eq!(parse("horcrux-a+0-3.conf"), counted(Slot::A, 0, 3));
    assert_eq!(
        parse("horcrux-a.conf"),
        Some(EntryName {
            slot: Slot::A,
            counter: None
        })
    );
    for garbage in [
        "horcrux-c.conf",
        "horcrux-b",
        "horcrux-b.conf~",
        "horcrux-b+.conf",
        "horcrux-b+-1.conf",
        "horcrux-b+x.conf",
        "horcrux-b+2-.conf",
        "horcrux-b+2-1-1.conf",
        "horcrux-b+99999999999.conf",
        "horcrux-b++3.conf",
        "horcrux-ab+3.conf",
        "debian.conf",
        "+3.conf",
        "",
    ] {
        assert_eq!(parse(garbage), None, "{garbage}");
    }
    assert_eq!(EntryName::file_name(Slot::B, 3), "horcrux-b+3.conf");
}

#[test]
fn counters_split_off_any_name() {
    let split = |name| split_counter(name).map(|(base, c)| (base, c.left, c.done));
    assert_eq!(
        split("horcrux-b+2-1.conf"),
        Some(("horcrux-b.conf".into(), 2, 1))
    );
    assert_eq!(
        split("horcrux-b+0-3.conf"),
        Some(("horcrux-b.conf".into(), 0, 3))
    );
    assert_eq!(split("other+5.conf"), Some(("other.conf".into(), 5, 0)));
    assert_eq!(split("horcrux-b.conf"), None);
    assert_eq!(split("+1.conf"), None);
    assert_eq!(split("x+1"), None);
}

#[test]
fn states() {
    assert_eq!(Counter::state(None), BootState::Good);
    let trial = Counter::state(Some(Counter { left: 2, done: 1 }));
    assert_eq!(trial.to_string(), "trial (2 tries left, 1 done)");
    let bad = Counter::state(Some(Counter { left: 0, done: 3 }));
    assert_eq!(bad.to_string(), "bad (no tries left: fell back)");
}

#[test]
fn slot_ownership() {
    assert!(belongs_to("horcrux-b.conf", Slot::B));
    assert!(belongs_to("horcrux-b+3.conf", Slot::B));
    assert!(belongs_to("horcrux-b+0-3.conf", Slot::B));
    assert!(belongs_to("horcrux-b+junk.conf", Slot::B));
    assert!(!belongs_to("horcrux-a.conf", Slot::B));
    assert!(!belongs_to("horcrux-b.conf.bak", Slot::B));
    assert!(!belongs_to("horcrux-bb.conf", Slot::B));
    assert!(!belongs_to("horcrux-b-old.conf", Slot::B));
}

#[test]
fn seq_is_one_above_the_highest() {
    assert_eq!(next_seq([]), 1);
    assert_eq!(next_seq(["title x\nversion 4\n", "version 9\n"]), 10);
    // No version, or one that is no integer, counts as 0.
    assert_eq!(next_seq(["title x\n", "version 2026.1\n"]), 1);
    assert_eq!(next_seq(["version   7  \n", "versions 100\n"]), 8);
    assert_eq!(entry_seq("title a\nversion 3\nversion 5\n"), 3);
}

#[test]
fn seq_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(next_seq_in(&dir.path().join("missing")).unwrap(), 1);
    fs::write(dir.path().join("horcrux-a.conf"), "version 4\n").unwrap();
    fs::write(dir.path().join("horcrux-b+0-3.conf"), "version 6\n").unwrap();
    // Not ours: ignored.
    fs::write(dir.path().join("debian.conf"), "version 50\n").unwrap();
    assert_eq!(next_seq_in(dir.path()).unwrap(), 7);
}

fn manifest(cmdline: &str) -> Manifest {
    let hash = "ab".repeat(32);
    let text = format!(
        "format = 1\nimage_id = \"horcrux-abc\"\nversion = \"2026.11.26-124501\"\n\
         built = \"2026-11-26T12:45:01Z\"\ncmdline = \"{cmdline}\"\n\
         [root]\nfile = \"root.img\"\nsize = 1000000\nsha256 = \"{hash}\"\nfstype = \"erofs\"\n\
         verity_root_hash = \"{}\"\nverity_hash_offset = 987136\n\
         [kernel]\nfile = \"vmlinuz\"\nsize = 1\nsha256 = \"{hash}\"\n\
         [initrd]\nfile = \"initrd.img\"\nsize = 1\nsha256 = \"{hash}\"\n",
        "cd".repeat(32)
    );
    manifest::parse(text.as_bytes()).unwrap()
}

#[test]
fn the_entry_text() {
    let m = manifest("console=ttyS0,115200 panic=10");
    let text = entry_text(&NewEntry {
        slot: Slot::B,
        seq: 7,
        partuuid: "0fc63daf-8483-4772-8e79-3d69d8477de4",
        manifest: &m,
    });
    let hash = "cd".repeat(32);
    let uuid = "0fc63daf-8483-4772-8e79-3d69d8477de4";
    assert_eq!(
        text,
        format!(
            "title Horcrux 2026.11.26-124501 (slot B)\n\
             version 7\n\
             sort-key horcrux\n\
             linux /horcrux/b/vmlinuz\n\
             initrd /horcrux/b/initrd.img\n\
             options root=/dev/mapper/root rootfstype=erofs ro roothash={hash} \
             systemd.verity_root_data=PARTUUID={uuid} systemd.verity_root_hash=PARTUUID={uuid} \
             systemd.verity_root_options=hash-offset=987136 horcrux.slot=b \
             horcrux.image=horcrux-abc console=ttyS0,115200 panic=10\n"
        )
    );
    assert_eq!(entry_seq(&text), 7);
    assert_eq!(
        field(&text, "title"),
        Some("Horcrux 2026.11.26-124501 (slot B)")
    );
    // No trailing space without extra arguments.
    let bare = entry_text(&NewEntry {
        slot: Slot::A,
        seq: 1,
        partuuid: uuid,
        manifest: &manifest(""),
    });
    assert!(
        bare.ends_with("horcrux.slot=a horcrux.image=horcrux-abc\n"),
        "{bare}"
    );
    assert!(bare.starts_with("title Horcrux 2026.11.26-124501 (slot A)\n"));
}

#[test]
fn boot_order_puts_bad_entries_last_then_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, seq: u64| {
        fs::write(
            dir.path().join(name),
            format!("title Horcrux {seq}\nversion {seq}\n"),
        )
        .unwrap();
    };
    write("horcrux-a.conf", 4);
    write("horcrux-b+0-3.conf", 5);
    write("debian.conf", 99);
    let entries = read_entries(dir.path()).unwrap();
    let files: Vec<&str> = entries.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(files, ["horcrux-a.conf", "horcrux-b+0-3.conf"]);
    assert_eq!(entries[1].state, BootState::Bad { done: 3 });
    assert_eq!(entries[0].title.as_deref(), Some("Horcrux 4"));

    fs::remove_file(dir.path().join("horcrux-b+0-3.conf")).unwrap();
    write("horcrux-b+2-1.conf", 6);
    let entries = read_entries(dir.path()).unwrap();
    assert_eq!(entries[0].file, "horcrux-b+2-1.conf");
    assert_eq!(entries[0].state, BootState::Trial { left: 2, done: 1 });
    assert_eq!(entries[1].file, "horcrux-a.conf");
}
