//! `make demo`: boots one appliance node from the image under QEMU, pushes
//! an example tree with git, prints the status URL and how to push, and
//! keeps the node running until Ctrl-C.
//!
//!   horcrux-demo IMAGE [EXAMPLE_DIR]
//!
//! Ports: HORCRUX_DEMO_HTTP_PORT (default 8006) and HORCRUX_DEMO_SSH_PORT
//! (default 2222), each replaced by a free one when taken.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use horcrux_e2e::image;
use horcrux_e2e::node::{Node, Options, Via};

fn port(var: &str, default: u16) -> Option<u16> {
    let wanted = std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    // Taken: let the node pick a free one.
    TcpListener::bind(("127.0.0.1", wanted))
        .ok()
        .map(|_| wanted)
}

fn demo() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let image_path = PathBuf::from(args.next().context("usage: horcrux-demo IMAGE [TREE]")?);
    let tree = args.next().map_or_else(
        || horcrux_e2e::repo_root().join("examples/single-node"),
        PathBuf::from,
    );
    let key = image::ssh_key()?;
    let opts = Options {
        name: "demo".into(),
        ssh_port: port("HORCRUX_DEMO_SSH_PORT", 2222),
        http_port: port("HORCRUX_DEMO_HTTP_PORT", 8006),
        ..Options::default()
    };
    println!(
        "== booting the appliance under QEMU ({}); first boot takes about a minute",
        opts.accel
    );
    let mut node = Node::boot(&image_path, &key, &opts)?;
    println!("   serial console log: {}", node.serial_log.display());
    let ssh = node.wait_ssh(Duration::from_secs(300))?;
    let ready = node.wait_hostd_ready(Duration::from_secs(300))?;
    println!(
        "   ssh after {:.0} s, hostd READY after {:.0} s",
        ssh.as_secs_f64(),
        ready.as_secs_f64()
    );
    // The example's `local-zfs` storage is pool "tank": made here on the
    // node's empty second disk, imported by hostd once the tree is pushed.
    println!("== creating ZFS pool tank (dataset tank/vms) on the node's second virtual disk");
    node.make_test_pool("tank", "tank/vms")?;
    println!("== pushing {} with git", tree.display());
    let pushed = node.push(&tree, Via::Git)?;
    print!("{}", pushed.output);
    let ssh_cmd = format!(
        "ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        key.display(),
        node.ssh_port
    );
    let sock = node.dir.join("serial.sock");
    println!(
        "
== Horcrux node running
   status page:    http://127.0.0.1:{http}/   (JSON: /status.json, Prometheus: /metrics)
   shell:          {ssh_cmd} root@127.0.0.1
   push with git:  git remote add demo ssh://root@127.0.0.1:{port}/var/lib/horcrux/config.git
                   GIT_SSH_COMMAND='{ssh_cmd}' git push demo HEAD:main
   push with rsync: rsync -a --delete -e '{ssh_cmd}' {tree}/ root@127.0.0.1:/etc/horcrux/
   serial console: {log} (live: socat -,raw,echo=0 UNIX-CONNECT:{sock})
   Ctrl-C stops the node.",
        http = node.http_port,
        port = node.ssh_port,
        tree = tree.display(),
        log = node.serial_log.display(),
        sock = sock.display(),
    );
    loop {
        std::thread::sleep(Duration::from_secs(2));
        if !node.alive() {
            // QEMU runs with -no-reboot: a reboot (or poweroff) ends it.
            println!("== the node rebooted or powered off; starting it again");
            node.power_on()?;
        }
    }
}

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
