#!/usr/bin/python3
"""sheafd on a disk that fills up, on a small tmpfs the test mounts.

Once, with the data directory on a 20 MiB filesystem, sheafd aborted on a
RocksDB assertion during ingestion, could not restart while the disk stayed
full, and if it stayed up, writes kept failing after space was freed. Now:
ingestion pauses with UNAVAILABLE naming the disk before RocksDB meets a
full disk, reads keep working, ingestion resumes by itself when space comes
back, SIGTERM exits 0, and a restart on a nearly full disk serves reads.

Needs root (mount); exits 77 (skipped) otherwise. Prints 'N passed, N failed'.
"""
import os
import subprocess
import sys
import tempfile
import time

SHEAFD = os.environ["SHEAFD"]
SHEAFCTL = os.environ["SHEAFCTL"]
LOADGEN = os.environ["SHEAF_LOADGEN"]
FS_MIB = 96
MIN_FREE_MIB = 24

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print("%s: %s%s" % ("ok" if ok else "FAIL", name, (" -- " + detail) if detail and not ok else ""))


def wait_for(cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def start(data, ready, log):
    return subprocess.Popen([SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                             "--data-dir", data, "--ready-file", ready, "--wal-sync=false",
                             "--min-free-disk-bytes", str(MIN_FREE_MIB << 20), "--grace-period", "2s",
                             # memtables well below the free-space threshold, as sheafd's defaults are
                             "--write-buffer-bytes", str(4 << 20), "--max-head-samples", "50000"],
                            stdout=log, stderr=subprocess.STDOUT)


def ports(ready, proc):
    if not wait_for(lambda: os.path.exists(ready) or proc.poll() is not None, 30) or proc.poll() is not None:
        return None
    return dict(line.split("=") for line in open(ready).read().split())


def run(args, timeout=60):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True)
    return p.returncode, p.stdout


def free_mib(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize >> 20


def main():
    if os.geteuid() != 0:
        print("skipped: needs root to mount a small tmpfs")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        mnt = os.path.join(tmp, "disk")
        os.mkdir(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % FS_MIB, "tmpfs", mnt]).returncode != 0:
            print("skipped: cannot mount a tmpfs here")
            return 77
        proc = None
        log = open(os.path.join(tmp, "sheafd.log"), "w")
        try:
            data, ready = os.path.join(mnt, "data"), os.path.join(tmp, "ready")
            proc = start(data, ready, log)
            p = ports(ready, proc)
            check("sheafd starts", p is not None)
            addr = "127.0.0.1:" + p["grpc_port"]
            rc, out = run([LOADGEN, "--addr", addr, "--hosts", "20", "--series-per-host", "10", "--points", "30",
                           "--agent-prefix", "before"])
            check("a first load is stored", rc == 0, out)
            # Fill the disk to just above the threshold, then push more.
            filler = os.path.join(mnt, "filler")
            with open(filler, "wb") as f:
                f.write(bytes((free_mib(mnt) - MIN_FREE_MIB + 2) << 20))
            rc, out = run([LOADGEN, "--addr", addr, "--hosts", "2000", "--series-per-host", "20", "--points", "100",
                           "--agent-prefix", "fill"], timeout=120)
            check("pushing into a full disk fails for the client", rc != 0, out)
            check("sheafd is still running", proc.poll() is None)
            rc, out = run([SHEAFCTL, "--addr", addr, "stats"])
            check("stats say the store is not writable and why",
                  rc == 0 and "writable                  no" in out and "free" in out, out)
            rc, out = run([SHEAFCTL, "--addr", addr, "--limit", "5", "series", '{job="node"}'])
            check("reads keep working", rc == 0 and "node_" in out, out)
            rc, out = run([LOADGEN, "--addr", addr, "--hosts", "1", "--series-per-host", "1", "--points", "1",
                           "--streams", "1", "--agent-prefix", "while-full"])
            check("a push while full is refused as retryable",
                  rc != 0 and ("UNAVAILABLE" in out or "14" in out or "free" in out), out)
            # Space comes back: ingestion resumes by itself.
            os.remove(filler)
            resumed = wait_for(lambda: run([LOADGEN, "--addr", addr, "--hosts", "1", "--series-per-host", "1",
                                            "--points", "1", "--streams", "1", "--agent-prefix", "after"])[0] == 0, 30)
            check("ingestion resumes by itself once space is freed", resumed)
            proc.terminate()
            rc = proc.wait(timeout=60)
            check("SIGTERM exits 0", rc == 0, "exit %s" % rc)
            # A restart on a nearly full disk serves reads.
            with open(filler, "wb") as f:
                f.write(bytes((free_mib(mnt) - MIN_FREE_MIB + 2) << 20))
            os.path.exists(ready) and os.remove(ready)
            proc = start(data, ready, log)
            p = ports(ready, proc)
            check("restarts on a nearly full disk", p is not None)
            if p is not None:
                addr = "127.0.0.1:" + p["grpc_port"]
                rc, out = run([SHEAFCTL, "--addr", addr, "--limit", "5", "series", '{job="node"}'])
                check("and serves reads", rc == 0 and "node_" in out, out)
                proc.terminate()
                check("and stops cleanly", proc.wait(timeout=60) == 0)
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
            subprocess.run(["umount", "-l", mnt])
            if not all(results):
                sys.stdout.write(open(os.path.join(tmp, "sheafd.log")).read()[-6000:])
    passed = sum(1 for r in results if r)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
