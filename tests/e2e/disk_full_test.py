#!/usr/bin/python3
"""sheafd on a disk that fills up, on a small tmpfs the test mounts.

Once, with the data directory on a 20 MiB filesystem, sheafd aborted on a
RocksDB assertion during ingestion, could not restart while the disk stayed
full, and if it stayed up, writes kept failing after space was freed. Now
ingestion pauses below --min-free-disk-bytes, before RocksDB meets a full
disk (Debian's RocksDB 7.8.3 aborts on an assertion in its write error
path when it does: measured with --min-free-disk-bytes 0 on this tmpfs,
most runs ended in `AssertFalseAndGetStatusForPrevError ... Assertion
sync_without_flush_called_ failed`, and in the one that did not, DB::Resume
answered "Resource busy" and writes stayed refused after space came back;
so sheafd refuses a reserve smaller than its memtables).

A real sheaf-agent scrapes a target of the test's (fault_support.Target)
throughout, and sheaf-loadgen fills the disk. Checked: pushes into the
full disk are refused with UNAVAILABLE "the data disk is full: ...", the
agent keeps its refused batches in its spool and drops nothing, reads keep
working, ingestion resumes by itself once the filler is deleted (no
restart), SIGTERM exits 0, and after a restart on a nearly full disk every
series holds exactly the samples the target served: nothing acknowledged
was lost, nothing is corrupted.

Needs root (mount); exits 77 (skipped) otherwise. Prints 'N passed, N
failed'; about 25 s.
"""
import os
import subprocess
import sys
import tempfile
import time

from fault_support import Agent, Sheafd, Target, check, close_all, compare, drain_and_compare, summary, wait_for

SHEAFCTL = os.environ["SHEAFCTL"]
LOADGEN = os.environ["SHEAF_LOADGEN"]
FS_MIB = 96
MIN_FREE_MIB = 24
SERIES = 50
METRIC = "disk_full_value"


def run(args, timeout=60):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, text=True)
    return p.returncode, p.stdout


def free_mib(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize >> 20


def fill(mnt):
    """A filler file leaving just above the reserve free; its path."""
    filler = os.path.join(mnt, "filler")
    with open(filler, "wb") as f:
        f.write(bytes((free_mib(mnt) - MIN_FREE_MIB + 2) << 20))
    return filler


def loadgen(addr, prefix, hosts=1, per_host=1, points=1, streams=1, timeout=60):
    return run([LOADGEN, "--addr", addr, "--hosts", str(hosts), "--series-per-host", str(per_host), "--points",
                str(points), "--streams", str(streams), "--agent-prefix", prefix], timeout=timeout)


def main():
    if os.geteuid() != 0:
        print("skipped: needs root to mount a small tmpfs")
        return 77
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        mnt = os.path.join(tmp, "disk")
        os.mkdir(mnt)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % FS_MIB, "tmpfs", mnt]).returncode != 0:
            print("skipped: cannot mount a tmpfs here")
            return 77
        target = Target(METRIC, SERIES)
        daemon = Sheafd(tmp, os.path.join(mnt, "data"),
                        ["--wal-sync=false", "--min-free-disk-bytes", str(MIN_FREE_MIB << 20), "--grace-period", "2s",
                         # memtables well below the free-space reserve, as sheafd's defaults are
                         "--write-buffer-bytes", str(4 << 20), "--max-head-samples", "50000"])
        agent = None
        try:
            if not check("sheafd starts", daemon.start()):
                return summary()
            agent = Agent(tmp, daemon.addr, target)
            rc, out = loadgen(daemon.addr, "before", hosts=20, per_host=10, points=30, streams=4)
            check("a first load is stored", rc == 0, out)
            check("the agent's scrapes are acknowledged",
                  wait_for(lambda: (agent.metric("sheaf_agent_samples_acked_total") or 0) >= 2 * SERIES, 20))
            # Fill the disk to just above the reserve, then push more.
            filler = fill(mnt)
            rc, out = loadgen(daemon.addr, "fill", hosts=2000, per_host=20, points=100, streams=4, timeout=120)
            check("pushing into a full disk fails for the client", rc != 0, out)
            check("sheafd is still running", daemon.alive())
            rc, out = loadgen(daemon.addr, "while-full")
            check('a push while full is UNAVAILABLE, "the data disk is full: ..."',
                  rc != 0 and "code 14" in out and "the data disk is full: " in out, out)
            rc, out = run([SHEAFCTL, "--addr", daemon.addr, "stats"])
            check("stats say the store is not writable and why",
                  rc == 0 and "writable                  no" in out and "free" in out, out)
            rc, out = run([SHEAFCTL, "--addr", daemon.addr, "--limit", "5", "series", '{job="node"}'])
            check("reads keep working (gRPC)", rc == 0 and "node_" in out, out)
            try:
                held = len(daemon.query("%s[1h]" % METRIC))
            except (OSError, RuntimeError) as e:
                held = str(e)
            check("reads keep working (HTTP)", held == SERIES, str(held))
            # The agent's batches are refused too: they wait in its spool.
            check("the agent keeps its refused batches in its spool",
                  wait_for(lambda: (agent.metric("sheaf_agent_spool_batches_unacked") or 0) >= 3, 15))
            # Space comes back: ingestion resumes by itself.
            os.remove(filler)
            resumed = wait_for(lambda: loadgen(daemon.addr, "after")[0] == 0, 30)
            check("ingestion resumes by itself once space is freed (no restart)", resumed)
            check("the agent's spool drains", wait_for(agent.drained, 30))
            drain_and_compare(agent, target, daemon)
            check("SIGTERM exits 0", daemon.stop() == 0)
            # A restart on a nearly full disk serves reads, all of them.
            filler = fill(mnt)
            if check("restarts on a nearly full disk", daemon.start()):
                rc, out = run([SHEAFCTL, "--addr", daemon.addr, "--limit", "5", "series", '{job="node"}'])
                check("and serves reads", rc == 0 and "node_" in out, out)
                bad = compare(daemon.samples(METRIC), target)
                check("nothing acknowledged is lost or changed across the restart", not bad, "; ".join(bad[:5]))
                check("and stops cleanly", daemon.stop() == 0)
            print("%d scrapes of %d series kept through the full disk; %.1f s" %
                  (len(target.served), SERIES, time.time() - started))
        finally:
            close_all(daemon, agent, target)
            subprocess.run(["umount", "-l", mnt])
    return summary()


if __name__ == "__main__":
    sys.exit(main())
