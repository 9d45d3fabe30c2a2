#!/usr/bin/python3
"""sheafd's web console in a real browser: Debian's chromium, headless,
driven over the DevTools protocol (python3-websocket).

A sheafd gets 15 minutes of sheaf-loadgen data (30 hosts in the 6 regions,
3 agents). Then, in one browser:
  - /graph?expr=sum by (region) (rate(node_cpu_seconds_total[1m])) draws a
    canvas chart whose HTML legend names all 6 regions; a click on a legend
    entry hides that series (the chart says so) and another shows it;
    hovering shows each series' value in the legend; the box completes
    label values, label names and functions, and remembers the query;
  - the table tab shows the instant result with 6 rows;
  - a bad expression shows the engine's message with its position;
  - /series lists the metric names; /agents the 3 loadgen agents; /status
    the version, the series count and bytes/sample; /tail shows the samples
    a second loadgen run pushes while the page is open, and only those;
  - a second sheafd with --auth-tokens: /tail says "missing bearer token"
    without one, and streams with the token kept in the page's session
    (the tail reads with fetch(), which sends it);
  - no page throws, logs an error to the console or violates its CSP
    (only the bad expression's own HTTP 400 is expected);
  - the page loads no URL outside sheafd: every request the browser made is
    to sheafd's address (and chromium resolves no other host at all).

Prints 'N passed, N failed'; exit 1 on any failure.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from promql_compat_test import check, results, stop, wait_for  # noqa: E402

import websocket  # noqa: E402  (Debian's python3-websocket)

SHEAFD = os.environ["SHEAFD"]
LOADGEN = os.environ["SHEAF_LOADGEN"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-south-1", "ap-northeast-1"]
PAGE_TIMEOUT = 15  # seconds for a page to show what is awaited


class Browser:
    """One headless chromium and one tab, over the DevTools protocol. Keeps
    every console message, exception and request of the tab."""

    def __init__(self, tmp, procs):
        profile = os.path.join(tmp, "chromium")
        log = open(os.path.join(tmp, "chromium.log"), "w")
        self.proc = subprocess.Popen([
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-extensions", "--mute-audio", "--window-size=1280,800",
            # No host but loopback resolves: a page that reached out would fail.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
            "--user-data-dir=" + profile, "about:blank"], stdout=log, stderr=subprocess.STDOUT)
        procs.append(self.proc)
        port_file = os.path.join(profile, "DevToolsActivePort")
        if not wait_for(lambda: os.path.getsize(port_file) > 0, 30):
            raise RuntimeError("chromium did not open its DevTools port (see chromium.log)")
        port = int(open(port_file).read().split()[0])
        targets = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=10)
        self.next_id = 0
        self.events = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(domain + ".enable")

    def call(self, method, **params):
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mine:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def open(self, url):
        self.events_before = len(self.events)
        self.call("Page.navigate", url=url)

    def wait(self, expression, timeout=PAGE_TIMEOUT):
        """Polls `expression` until truthy; its last value."""
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(0.1)
        return value

    def problems(self, since=0):
        """Console errors and warnings, exceptions and CSP reports since event `since`."""
        out = []
        for e in self.events[since:]:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append("exception: %s" % d.get("exception", {}).get("description", d.get("text")))
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "warning", "assert"):
                out.append("console.%s: %s" % (p["type"], " ".join(str(a.get("value", a.get("description")))
                                                                  for a in p["args"])))
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append("log (%s): %s %s" % (p["entry"]["source"], p["entry"]["text"], p["entry"].get("url", "")))
        return out

    def requests(self):
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        self.ws.close()


def main():
    tmp = tempfile.mkdtemp(prefix="sheaf-console-")
    procs = []
    try:
        started = time.time()
        ready_file = os.path.join(tmp, "sheafd.ready")
        procs.append(subprocess.Popen([SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                       "--data-dir", os.path.join(tmp, "sheaf"), "--ready-file", ready_file,
                                       "--wal-sync=false"],
                                      stdout=open(os.path.join(tmp, "sheafd.log"), "w"), stderr=subprocess.STDOUT))
        if not wait_for(lambda: os.path.getsize(ready_file) > 0, 30):
            check("sheafd ready", False)
            return
        ports = dict(line.split("=") for line in open(ready_file).read().split())
        base = "http://127.0.0.1:%s" % ports["http_port"]
        p = subprocess.run([LOADGEN, "--addr", "127.0.0.1:" + ports["grpc_port"], "--hosts", "30",
                            "--series-per-host", "10", "--points", "90", "--interval", "10s", "--streams", "3"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        check("sheaf-loadgen pushed", p.returncode == 0, p.stdout[-2000:])

        browser = Browser(tmp, procs)
        # /graph: a chart and a legend naming every region.
        expr = "sum by (region) (rate(node_cpu_seconds_total[1m]))"
        browser.open(base + "/graph?" + urllib.parse.urlencode({"expr": expr, "range": "15m"}))
        n = browser.wait("document.querySelectorAll('#legend li').length >= 6 && "
                         "document.querySelectorAll('#legend li').length")
        legend = browser.eval("[...document.querySelectorAll('#legend li .labels')].map(e => e.textContent)") or []
        check("graph: legend has 6 entries", n == 6, "legend: %s" % legend)
        missing = [r for r in REGIONS if not any('region="%s"' % r in entry for entry in legend)]
        check("graph: legend names every region", not missing, "missing %s in %s" % (missing, legend))
        drawn = browser.eval("(() => { const c = document.querySelector('.chart-box canvas'); if (!c) return 0;"
                             " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                             " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; })()")
        check("graph: the canvas has drawn pixels", (drawn or 0) > 1000, "drawn pixels: %s" % drawn)
        points = browser.eval("Chart.getChart(document.querySelector('.chart-box canvas'))"
                              ".data.datasets.map(d => d.data.filter(p => p.y !== null).length)")
        check("graph: every series has points", points and len(points) == 6 and min(points) >= 50,
              "points per series: %s" % points)
        # A click on a legend entry hides the series; another shows it again.
        hidden = browser.eval("(() => { document.querySelector('#legend li').click();"
                              " return !Chart.getChart(document.querySelector('.chart-box canvas')).isDatasetVisible(0)"
                              " && document.querySelector('#legend li').classList.contains('off'); })()")
        shown = browser.eval("(() => { document.querySelector('#legend li').click();"
                             " return Chart.getChart(document.querySelector('.chart-box canvas')).isDatasetVisible(0); })()")
        check("graph: legend click hides and shows a series", hidden is True and shown is True,
              "hidden %s, shown %s" % (hidden, shown))
        # Hover: each series' value at the cursor's time, in the legend.
        rect = browser.eval("(() => { const r = document.querySelector('.chart-box canvas').getBoundingClientRect();"
                            " return [r.x + r.width * 0.6, r.y + r.height * 0.5]; })()")
        browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=rect[0], y=rect[1])
        values = browser.wait("[...document.querySelectorAll('#legend li .value')].every(e => e.textContent) && "
                              "[...document.querySelectorAll('#legend li .value')].map(e => e.textContent)") or []
        check("graph: hovering shows every series' value in the legend",
              len(values) == 6 and all(float(v) > 0 for v in values), "values: %s" % values)
        # Completion: label values after `region="`, functions by prefix; the query is remembered.
        suggest = ("(async (text) => { const box = document.querySelector('#expr'); box.focus(); box.value = text;"
                   " box.selectionStart = box.selectionEnd = text.length;"
                   " box.dispatchEvent(new Event('input')); })(%s)")
        items = "[...document.querySelectorAll('ul.suggest li')].map(e => e.firstChild.textContent)"
        browser.eval(suggest % json.dumps('node_cpu_seconds_total{region="eu-'))
        got = browser.wait("%s.length && %s" % (items, items)) or []
        check("graph: completes label values", sorted(got) == ["eu-central-1", "eu-west-1"], "offered: %s" % got)
        browser.eval(suggest % json.dumps("sum by (reg"))
        got = browser.wait("%s.includes('region') && %s" % (items, items)) or []
        check("graph: completes label names in by (...)", got == ["region"], "offered: %s" % got)
        browser.eval(suggest % json.dumps("rat"))
        got = browser.wait("%s.includes('rate') && %s" % (items, items)) or []
        check("graph: completes function names", "rate" in got, "offered: %s" % got)
        history = browser.eval("JSON.parse(localStorage.getItem('sheaf.history'))")
        check("graph: the query is remembered", history and history[0] == expr, "history: %s" % history)
        state = browser.eval("location.search")
        check("graph: the state is in the query string", "range=15m" in state and "expr=" in state, state)
        problems = browser.problems()
        check("graph: no console errors", not problems, "; ".join(problems))

        # The table tab: the instant result.
        mark = len(browser.events)
        browser.open(base + "/graph?" + urllib.parse.urlencode({"expr": expr, "tab": "table"}))
        rows = browser.wait("document.querySelectorAll('.panel tbody tr').length")
        check("table: 6 rows", rows == 6, "rows: %s" % rows)
        check("table: no console errors", not browser.problems(mark), "; ".join(browser.problems(mark)))

        # A bad expression: the engine's message with its position.
        mark = len(browser.events)
        browser.open(base + "/graph?" + urllib.parse.urlencode({"expr": "sum(rate(node_cpu_seconds_total[1m])"}))
        error = browser.wait("document.querySelector('.error') && document.querySelector('.error').textContent")
        check("bad expression: the engine's error with its position", error and "1:4" in error and
              "parenthesis" in error, "shown: %r" % error)
        check("bad expression: no chart", browser.eval("document.querySelector('canvas') === null") is True)
        # Chromium logs the 400 of the query itself; nothing else may appear.
        seen = browser.problems(mark)
        check("bad expression: the browser logged the query's 400 (the log is watched)",
              any("status of 400" in p for p in seen), "; ".join(seen))
        other = [p for p in seen if "status of 400" not in p]
        check("bad expression: no other console errors", not other, "; ".join(other))

        # /series: the metric names.
        mark = len(browser.events)
        browser.open(base + "/series")
        names = browser.wait("document.querySelectorAll('#metric-names li').length >= 5 && "
                             "[...document.querySelectorAll('#metric-names li')].map(e => e.textContent)") or []
        check("series: lists the metric names", "node_cpu_seconds_total" in names, "names: %s" % names[:20])
        check("series: no console errors", not browser.problems(mark), "; ".join(browser.problems(mark)))

        # /agents: the loadgen agents; /status: the store's figures.
        mark = len(browser.events)
        browser.open(base + "/agents")
        agents = browser.wait("document.querySelectorAll('#agents tbody tr').length >= 3 && "
                              "[...document.querySelectorAll('#agents tbody tr td:first-child')].map(e => e.textContent)") or []
        check("agents: lists the 3 loadgen agents", sorted(agents) == ["loadgen-0", "loadgen-1", "loadgen-2"],
              "agents: %s" % agents)
        hosts = browser.eval("[...document.querySelectorAll('#agents tbody tr td:nth-child(2)')].map(e => e.textContent)")
        check("agents: each agent's host label", hosts and all(h.startswith("host-") for h in hosts), "hosts: %s" % hosts)
        check("agents: no console errors", not browser.problems(mark), "; ".join(browser.problems(mark)))
        mark = len(browser.events)
        browser.open(base + "/status")
        cards = browser.wait("document.querySelectorAll('#status-cards .card').length >= 8 && "
                             "document.querySelector('#status-cards').innerText") or ""
        check("status: shows version, series and bytes/sample", "version" in cards and "bytes/sample" in cards
              and "\n300\n" in cards, "cards: %r" % cards[:400])
        check("status: no console errors", not browser.problems(mark), "; ".join(browser.problems(mark)))

        # /tail: samples pushed after the page opened show up within seconds.
        mark = len(browser.events)
        browser.open(base + "/tail?match=node_load1")
        live = browser.wait("document.querySelector('#tail-state') && "
                            "document.querySelector('#tail-state').textContent === 'live'")
        check("tail: the stream opens", live is True, "state: %s" % browser.eval(
            "document.querySelector('#tail-state') && document.querySelector('#tail-state').textContent"))
        pushed = time.time()
        p = subprocess.run([LOADGEN, "--addr", "127.0.0.1:" + ports["grpc_port"], "--hosts", "30",
                            "--series-per-host", "10", "--points", "2", "--streams", "1", "--agent-prefix", "live"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        check("tail: sheaf-loadgen pushed again", p.returncode == 0, p.stdout[-2000:])
        lines = browser.wait("document.querySelector('#tail').textContent.split('\\n')"
                             ".filter(l => l.includes('node_load1{')).length >= 60 && "
                             "document.querySelector('#tail').textContent.split('\\n')", timeout=10) or []
        check("tail: the 60 new node_load1 samples (30 hosts x 2 points) shown within 10 s",
              len([l for l in lines if "node_load1{" in l]) == 60, "lines: %s" % lines[:5])
        print("tail: shown %.2f s after the push began" % (time.time() - pushed))
        check("tail: only the selected series", all("node_load1{" in l for l in lines), "lines: %s" % lines[:5])
        check("tail: no console errors", not browser.problems(mark), "; ".join(browser.problems(mark)))

        # With --auth-tokens: a second sheafd whose data needs a token. The
        # tail (fetch(), not EventSource) sends the one typed into the
        # header, as every other request does.
        mark = len(browser.events)
        tokens = os.path.join(tmp, "tokens.yaml")
        with open(tokens, "w") as f:
            f.write("- {name: console, token: console-secret, tenant: default, roles: [ingest, query]}\n")
        token_file = os.path.join(tmp, "token")
        with open(token_file, "w") as f:
            f.write("console-secret\n")
        ready2 = os.path.join(tmp, "sheafd2.ready")
        procs.append(subprocess.Popen([SHEAFD, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
                                       "--data-dir", os.path.join(tmp, "sheaf2"), "--ready-file", ready2,
                                       "--wal-sync=false", "--auth-tokens", tokens],
                                      stdout=open(os.path.join(tmp, "sheafd2.log"), "w"), stderr=subprocess.STDOUT))
        check("tokens: sheafd ready", wait_for(lambda: os.path.exists(ready2) and os.path.getsize(ready2) > 0, 30))
        ports2 = dict(line.split("=") for line in open(ready2).read().split())
        base2 = "http://127.0.0.1:%s" % ports2["http_port"]
        state = "document.querySelector('#tail-state') && document.querySelector('#tail-state').textContent"
        browser.open(base2 + "/tail?match=node_load1")
        refused = browser.wait("(%s || '').startsWith('failed') && %s" % (state, state)) or ""
        check("tokens: without a token the tail says why", "missing bearer token" in refused, "state: %r" % refused)
        browser.eval("sessionStorage.setItem('sheaf.token', 'console-secret'); 1")
        browser.open(base2 + "/tail?match=node_load1")
        live = browser.wait("(%s) === 'live'" % state)
        check("tokens: with the token the tail opens", live is True, "state: %s" % browser.eval(state))
        p = subprocess.run([LOADGEN, "--addr", "127.0.0.1:" + ports2["grpc_port"], "--hosts", "5",
                            "--series-per-host", "10", "--points", "2", "--streams", "1",
                            "--token-file", token_file],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        check("tokens: sheaf-loadgen pushed with its token", p.returncode == 0, p.stdout[-2000:])
        lines = browser.wait("document.querySelector('#tail').textContent.split('\\n')"
                             ".filter(l => l.includes('node_load1{')).length >= 10 && "
                             "document.querySelector('#tail').textContent.split('\\n')", timeout=10) or []
        check("tokens: the tail shows the 10 new samples", len([l for l in lines if "node_load1{" in l]) == 10,
              "lines: %s" % lines[:5])
        # Only the refused request's 401 may be in the log.
        other = [e for e in browser.problems(mark) if "status of 401" not in e]
        check("tokens: no other console errors", not other, "; ".join(other))

        # The watch catches what a page would log.
        mark = len(browser.events)
        browser.eval("console.error('probe'); setTimeout(() => { throw new Error('probe2'); }, 0); 1")
        time.sleep(0.3)
        browser.eval("1")
        caught = browser.problems(mark)
        check("the console watch catches errors and exceptions", len(caught) == 2, "; ".join(caught))

        # Nothing but sheafd was asked for anything.
        urls = browser.requests()
        outside = [u for u in urls if not u.startswith(base + "/") and not u.startswith(base2 + "/")
                   and not u.startswith("data:") and u != "about:blank"]
        check("no URL outside sheafd (%d requests)" % len(urls), urls and not outside, "outside: %s" % outside)
        browser.close()
        print("took %.1f s" % (time.time() - started))
    finally:
        stop(procs, tmp, results)


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
