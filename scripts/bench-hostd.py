#!/usr/bin/env python3
"""hostd benchmarks (issue: hostd core). Prints figures; asserts nothing.

* save -> new generation visible on /status.json: p50/p90/max over N edits
* idle RSS with a 100-VM and a 10,000-VM tree loaded
* idle CPU over a quiet interval

Usage: scripts/bench-hostd.py [--edits 40] [--idle 10]
Needs release binaries: cargo build --release -p horcrux-hostd -p horcrux-config --examples
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as r:
        return json.load(r)


def wait(port, pred, timeout=120):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            s = status(port)
            if pred(s):
                return s
        except OSError:
            pass
        time.sleep(0.002)
    raise SystemExit("timed out")


def proc_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def start(tree, port, work):
    cmd = [os.path.join(BIN, "hostd"), "--config-dir", tree, "--state-dir", os.path.join(work, "state"),
           "--run-dir", os.path.join(work, "run"), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env={**os.environ, "HOSTD_LOG": "warn"})
    wait(port, lambda s: s["ready"] and s["generation"] is not None)
    return proc


def generate(tree, vms):
    subprocess.run([os.path.join(BIN, "examples", "gen_tree"), tree, "--vms", str(vms),
                    "--networks", "100", "--groups", "100"], check=True, stdout=subprocess.DEVNULL)


def bench_tree(vms, edits, idle):
    work = tempfile.mkdtemp(prefix="hostd-bench-")
    tree = os.path.join(work, "etc")
    try:
        generate(tree, vms)
        port = free_port()
        t0 = time.monotonic()
        proc = start(tree, port, work)
        startup = time.monotonic() - t0
        time.sleep(1)
        ticks0, t0 = cpu_ticks(proc.pid), time.monotonic()
        time.sleep(idle)
        cpu = (cpu_ticks(proc.pid) - ticks0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
        rss = proc_field(proc.pid, "VmRSS") / 1024
        latencies = []
        vm_dir = os.path.join(tree, "cluster", "vms")
        victim = os.path.join(vm_dir, sorted(os.listdir(vm_dir))[0])
        original = open(victim).read()
        for i in range(edits):
            gen = status(port)["generation"]["id"]
            tmp = victim + ".tmp"
            with open(tmp, "w") as f:
                f.write(original + f"\n# edit {i}\n")
            begin = time.monotonic()
            os.rename(tmp, victim)
            wait(port, lambda s: s["generation"]["id"] > gen)
            latencies.append((time.monotonic() - begin) * 1000)
        hwm = proc_field(proc.pid, "VmHWM") / 1024
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        latencies.sort()
        p90 = latencies[int(len(latencies) * 0.9) - 1] if latencies else 0
        print(f"{vms:>6} VMs: startup to ready {startup*1000:.0f} ms; idle RSS {rss:.1f} MiB (peak {hwm:.1f} MiB); "
              f"idle CPU {cpu*100:.2f} % over {idle}s; save->visible p50 {statistics.median(latencies):.0f} ms, "
              f"p90 {p90:.0f} ms, max {latencies[-1]:.0f} ms ({edits} edits)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=40)
    ap.add_argument("--idle", type=int, default=10)
    args = ap.parse_args()
    for vms in (100, 10000):
        bench_tree(vms, args.edits if vms <= 100 else max(5, args.edits // 4), args.idle)


if __name__ == "__main__":
    sys.exit(main())
