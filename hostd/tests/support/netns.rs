//! Network namespaces for the network and firewall tests: each test makes
//! its own with `ip netns add` and they are removed on drop, so tests never
//! touch the host's links or nftables and can run in parallel.
//!
//! Some kernels lack features the appliance has (this CI host's kernel has
//! no 802.1Q, no VLAN-filtering bridges and no bridge conntrack). A test
//! that needs one calls [`require`]: without the feature it says so and
//! returns early, unless `HORCRUX_NET_TESTS_STRICT=1`, which the appliance
//! e2e sets when it runs these same tests on the image's kernel, where a
//! missing feature is a failure.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace that exists until dropped.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// A new namespace with loopback up.
    pub fn new(label: &str) -> NetNs {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("hxt{}-{label}-{n}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = NetNs { name };
        ns.ok("ip link set lo up");
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sh -c CMD` inside the namespace.
    pub fn sh(&self, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .output()
            .expect("ip netns exec")
    }

    /// Runs `sh -c CMD` inside the namespace and returns its stdout;
    /// panics with its stderr if it fails.
    pub fn ok(&self, cmd: &str) -> String {
        let out = self.sh(cmd);
        assert!(
            out.status.success(),
            "in netns {}: `{cmd}` failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread that has entered the namespace, so sockets,
    /// netlink connections and child processes it creates live there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = std::fs::File::open(&path).expect("open netns");
                    rustix::thread::move_into_link_name_space(
                        file.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .expect("setns");
                    f()
                })
                .join()
                .expect("thread in netns panicked")
        })
    }

    /// Runs an async block on a current-thread runtime inside the
    /// namespace.
    pub fn block_on<F: std::future::Future>(&self, f: impl FnOnce() -> F + Send) -> F::Output
    where
        F::Output: Send,
    {
        self.run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(f())
        })
    }

    /// A TCP listener on `addr` inside the namespace that accepts (and
    /// answers "ok\n" to) connections on a background thread.
    pub fn tcp_server(&self, addr: SocketAddr) {
        let listener = self.run(|| TcpListener::bind(addr).expect("bind"));
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                use std::io::Write as _;
                let _ = conn.write_all(b"ok\n");
            }
        });
    }

    /// Whether a TCP connection from inside the namespace to `addr`
    /// succeeds (and reads the server's greeting) within `timeout`.
    pub fn tcp_connects(&self, addr: SocketAddr, timeout: Duration) -> bool {
        self.run(|| {
            use std::io::Read as _;
            let Ok(mut conn) = TcpStream::connect_timeout(&addr, timeout) else {
                return false;
            };
            let _ = conn.set_read_timeout(Some(timeout));
            let mut buf = [0u8; 3];
            conn.read_exact(&mut buf).is_ok() && &buf == b"ok\n"
        })
    }

    /// A UDP socket bound inside the namespace.
    pub fn udp_socket(&self, addr: SocketAddr) -> UdpSocket {
        self.run(|| UdpSocket::bind(addr).expect("bind udp"))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// A veth pair with one end (`a_if`) in `a` and the other (`b_if`) in `b`,
/// both up.
pub fn veth(a: &NetNs, a_if: &str, b: &NetNs, b_if: &str) {
    a.ok(&format!(
        "ip link add {a_if} type veth peer name {b_if} netns {}",
        b.name()
    ));
    a.ok(&format!("ip link set {a_if} up"));
    b.ok(&format!("ip link set {b_if} up"));
}

/// Kernel features some test hosts lack.
#[derive(Clone, Copy, Debug)]
pub enum Feature {
    /// 802.1Q VLAN devices (CONFIG_VLAN_8021Q).
    Vlan,
    /// Connection tracking for bridged traffic, needed by `ct state` in
    /// the `bridge` family (CONFIG_NF_CONNTRACK_BRIDGE).
    BridgeConntrack,
}

/// Whether this kernel has `feature`, probed in a scratch namespace. When
/// it does not: panics under `HORCRUX_NET_TESTS_STRICT=1`, otherwise
/// prints why the test stops here and returns false.
pub fn require(feature: Feature, test: &str) -> bool {
    let ns = NetNs::new("probe");
    let probe = match feature {
        Feature::Vlan => {
            "ip link add p0 type veth peer name p1 && ip link add link p0 name p0.7 type vlan id 7"
        }
        Feature::BridgeConntrack => {
            "printf 'table bridge probe {\\n chain c {\\n type filter hook forward priority 0\\n ct state established accept\\n }\\n}\\n' | nft -f -"
        }
    };
    if ns.sh(probe).status.success() {
        return true;
    }
    let strict = std::env::var_os("HORCRUX_NET_TESTS_STRICT").is_some_and(|v| v == "1");
    assert!(!strict, "{test}: this kernel lacks {feature:?}");
    eprintln!(
        "{test}: NOT RUN HERE: this kernel lacks {feature:?}; the appliance e2e runs it on the image's kernel"
    );
    false
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
