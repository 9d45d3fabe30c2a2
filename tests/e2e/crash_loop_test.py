#!/usr/bin/python3
"""sheafd SIGKILLed at random moments, over and over, under a real agent's load.

A sheaf-agent scrapes a target this test serves (fault_support.Target:
SERIES series, one sample each per scrape, so the test knows exactly which
samples exist) every 500 ms. Meanwhile sheafd is SIGKILLed at a random
moment 0.3-1.5 s after it is ready, ROUNDS times (CRASH_LOOP_ROUNDS,
default 20), and restarted at once on the same data directory and port;
the agent keeps what is not acknowledged in its spool and sends it again.
At the end the target stops answering, the agent drains its spool, and
every series read back from sheafd must hold exactly the samples served —
none missing, none extra, no value changed — and the agent must have
dropped nothing and stop with nothing waiting.

Prints 'N passed, N failed'; about 40 s.
"""
import os
import random
import sys
import tempfile
import time

from fault_support import Agent, Sheafd, Target, check, close_all, drain_and_compare, summary, wait_for

ROUNDS = int(os.environ.get("CRASH_LOOP_ROUNDS", "20"))
SERIES = 400
METRIC = "crash_loop_value"


def main():
    seed = int(os.environ.get("CRASH_LOOP_SEED", str(time.time_ns())))
    random.seed(seed)
    print("seed %d (CRASH_LOOP_SEED repeats the kill moments)" % seed)
    started = time.time()
    target = Target(METRIC, SERIES)
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Sheafd(tmp, os.path.join(tmp, "data"), ["--grace-period", "1s"])
        agent = None
        try:
            check("sheafd starts", daemon.start())
            agent = Agent(tmp, daemon.addr, target)
            check("the agent ships its first scrapes",
                  wait_for(lambda: (agent.metric("sheaf_agent_samples_acked_total") or 0) >= SERIES, 20))
            kills, restarts = 0, 0
            for _ in range(ROUNDS):
                time.sleep(random.uniform(0.3, 1.5))
                if not daemon.alive():
                    break
                daemon.kill()
                kills += 1
                time.sleep(random.uniform(0, 0.3))
                if not daemon.start():
                    break
                restarts += 1
            check("%d SIGKILLs, each restart serves" % ROUNDS, kills == ROUNDS and restarts == ROUNDS,
                  "%d kills, %d restarts" % (kills, restarts))
            # The kills hit the agent's open streams (not only idle moments).
            cut = agent.metric('sheaf_agent_streams_total{result="failed"}') or 0
            check("the kills cut the agent's streams (%d failed)" % cut, cut >= ROUNDS // 2)
            # The target stops; the agent's spool drains into the last sheafd.
            drain_and_compare(agent, target, daemon)
            print("%d rounds; %d scrapes of %d series stored exactly; %.1f s" %
                  (ROUNDS, len(target.served), SERIES, time.time() - started))
        finally:
            close_all(daemon, agent, target)
    return summary()


if __name__ == "__main__":
    sys.exit(main())
