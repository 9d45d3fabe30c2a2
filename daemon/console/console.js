// sheafd's web console: one small app for /graph, /series, /agents,
// /status and /tail. It uses only the public HTTP API (/api/v1/...), the
// console's JSON endpoints under /api/v1/status/ and the tail stream, so
// it works against any sheafd that has them. Chart.js (Debian's
// libjs-chart.js) draws the chart; everything else is plain DOM. The page
// state lives in the query string, so a URL is shareable.
"use strict";

const HISTORY_KEY = "sheaf.history";  // recent queries, in localStorage
const HISTORY_MAX = 20;
const TOKEN_KEY = "sheaf.token";  // the API token, for this browser session only
const SUGGEST_MAX = 30;
const RANGES = ["5m", "15m", "30m", "1h", "3h", "6h", "12h", "1d", "2d", "7d", "14d", "30d"];
// Enough points for a smooth line, few enough to draw at once.
const TARGET_POINTS = 250;
const MAX_CHART_SERIES = 200;
const PALETTE = ["#2456c7", "#d1495b", "#2e933c", "#e08e0b", "#7b4ec9", "#0f9bb3", "#b5487c", "#6b7f1a",
  "#a65f2a", "#3d5a80", "#e4572e", "#17bebb", "#8a6fdf", "#76b041", "#c44536", "#4f6d7a"];
const FUNCTIONS = ["abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes",
  "clamp", "clamp_max", "clamp_min", "count", "count_over_time", "count_values", "day_of_month", "day_of_week",
  "days_in_month", "delta", "deriv", "exp", "floor", "group", "histogram_quantile", "holt_winters", "hour",
  "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "max",
  "max_over_time", "min", "min_over_time", "minute", "month", "predict_linear", "present_over_time", "quantile",
  "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev",
  "stddev_over_time", "stdvar", "stdvar_over_time", "sum", "sum_over_time", "time", "timestamp", "topk",
  "vector", "year"];

// ---------------------------------------------------------------------------
// Helpers

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const app = () => document.getElementById("app");

function params() { return new URLSearchParams(location.search); }

// Replaces the query string (the page's state) without a reload.
function setParams(values) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(values)) if (v !== "" && v !== undefined && v !== null) p.set(k, v);
  history.replaceState(null, "", location.pathname + (p.toString() ? "?" + p : ""));
}

class ApiError extends Error {
  constructor(message, status, type) { super(message); this.status = status; this.type = type; }
}

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

// GET an /api/v1/ path; resolves to the envelope's data, with warnings
// attached; rejects with the engine's message on an error envelope.
async function api(path, query) {
  const qs = query ? "?" + new URLSearchParams(query) : "";
  let response;
  try {
    response = await fetch(path + qs, { headers: authHeaders() });
  } catch (e) {
    throw new ApiError("cannot reach sheafd: " + e.message, 0, "unavailable");
  }
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new ApiError(`${path}: HTTP ${response.status} without a JSON answer`, response.status, "internal");
  }
  if (body.status !== "success") {
    throw new ApiError(body.error || `HTTP ${response.status}`, response.status, body.errorType);
  }
  const data = body.data;
  if (body.warnings && data && typeof data === "object") data.__warnings = body.warnings;
  return data;
}

function parseDuration(text) {
  const m = /^(\d+)(ms|s|m|h|d|w|y)$/.exec(text || "");
  if (!m) return null;
  const unit = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5, y: 31536e6 }[m[2]];
  return Number(m[1]) * unit;
}

function formatDuration(ms) {
  for (const [unit, size] of [["d", 864e5], ["h", 36e5], ["m", 6e4], ["s", 1e3]]) {
    if (ms >= size && ms % size === 0) return ms / size + unit;
  }
  return ms + "ms";
}

const pad = (n) => String(n).padStart(2, "0");

// Tick labels of the time axis (local time), as detailed as the span needs.
function formatTick(ms, spanMs) {
  const d = new Date(ms);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (spanMs <= 15 * 6e4) return `${hm}:${pad(d.getSeconds())}`;
  if (spanMs <= 864e5) return hm;
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`;
}

// Tick positions on round times (whole minutes, hours, days; local
// midnight for days), at most about 10 of them between min and max.
const TICK_STEPS = [1e3, 5e3, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5, 1728e5, 6048e5];

function timeTicks(min, max) {
  const step = TICK_STEPS.find((s) => (max - min) / s <= 10) || TICK_STEPS[TICK_STEPS.length - 1];
  // Aligned in local time: the offset of the time zone moves hour and day edges.
  const offset = new Date(min).getTimezoneOffset() * 6e4;
  const ticks = [];
  for (let t = Math.ceil((min - offset) / step) * step + offset; t <= max; t += step) ticks.push({ value: t });
  return ticks;
}

function formatTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// "2026-01-02 15:04:05" or "2026-01-02T15:04" (local) or Unix seconds -> ms.
function parseEnd(text) {
  if (!text) return null;
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const ms = Date.parse(text.replace(" ", "T"));
  return Number.isNaN(ms) ? null : ms;
}

function formatNumber(v) {
  if (typeof v === "string") return v;
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-3)) return v.toExponential(3);
  return String(Math.round(v * 1000) / 1000);
}

// A rate for people to read at a glance: "34,056", "12.5", "0.2".
function formatRate(v) {
  if (!Number.isFinite(v)) return String(v);
  return v.toLocaleString("en-US", { maximumFractionDigits: Math.abs(v) >= 100 ? 0 : 1 });
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

// `{__name__="x", a="b"}` -> `x{a="b"}`, as Prometheus names series.
function seriesName(metric) {
  const name = metric.__name__ || "";
  const labels = Object.keys(metric).filter((k) => k !== "__name__").sort()
    .map((k) => `${k}=${JSON.stringify(metric[k])}`);
  return labels.length || !name ? `${name}{${labels.join(", ")}}` : name;
}

function errorBox(message) { return el("div", { class: "error", role: "alert" }, message); }

function warnings(data) {
  return (data && data.__warnings || []).map((w) => el("div", { class: "warning" }, "warning: " + w));
}

// ---------------------------------------------------------------------------
// /graph

function loadHistory() {
  try { return JSON.parse(localStorage.getItem(HISTORY_KEY)) || []; } catch (e) { return []; }
}

function remember(expr) {
  const list = [expr, ...loadHistory().filter((e) => e !== expr)].slice(0, HISTORY_MAX);
  try { localStorage.setItem(HISTORY_KEY, JSON.stringify(list)); } catch (e) { /* storage full or off */ }
}

// Label names and values for completion, fetched once each and cached.
const completion = {
  names: null, values: new Map(),
  async labelNames() {
    if (!this.names) this.names = api("/api/v1/labels").catch(() => []);
    return this.names;
  },
  async labelValues(name) {
    if (!this.values.has(name)) {
      this.values.set(name, api(`/api/v1/label/${encodeURIComponent(name)}/values`).catch(() => []));
    }
    return this.values.get(name);
  },
};

// What to complete at the cursor: a label value (inside {..., name="),
// a label name (inside { or by (...)), or a metric or function name.
function completionContext(text) {
  const value = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(text);
  if (value && text.lastIndexOf("{") > text.lastIndexOf("}")) {
    return { kind: "value", label: value[1], prefix: value[3] };
  }
  const word = /([a-zA-Z_:][a-zA-Z0-9_:]*)?$/.exec(text)[0] || "";
  const before = text.slice(0, text.length - word.length);
  const inBraces = before.lastIndexOf("{") > before.lastIndexOf("}");
  const inGrouping = /\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)$/.test(before);
  if (inBraces || inGrouping) return { kind: "label", prefix: word };
  return { kind: "metric", prefix: word };
}

async function suggestions(text) {
  const ctx = completionContext(text);
  let items = [];
  if (ctx.kind === "value") {
    items = (await completion.labelValues(ctx.label)).map((v) => ({ text: v, kind: ctx.label }));
  } else if (ctx.kind === "label") {
    items = (await completion.labelNames()).filter((n) => n !== "__name__").map((n) => ({ text: n, kind: "label" }));
  } else {
    if (!ctx.prefix) return { ctx, items: [] };
    const metrics = (await completion.labelValues("__name__")).map((n) => ({ text: n, kind: "metric" }));
    items = FUNCTIONS.map((f) => ({ text: f, kind: "function" })).concat(metrics);
  }
  const p = ctx.prefix.toLowerCase();
  items = items.filter((i) => i.text.toLowerCase().startsWith(p) && i.text !== ctx.prefix);
  return { ctx, items: items.slice(0, SUGGEST_MAX) };
}

// The PromQL box: completion and recent queries in one list under it.
function queryBox(initial, run) {
  const input = el("textarea", { id: "expr", rows: 1, spellcheck: "false", autocomplete: "off",
    "aria-label": "PromQL expression", placeholder: "PromQL expression, e.g. sum by (region) (rate(node_cpu_seconds_total[1m]))" });
  input.value = initial;
  const list = el("ul", { class: "suggest", role: "listbox", hidden: true });
  let items = [], active = -1, replace = 0;

  const show = (entries, replaceChars) => {
    items = entries; replace = replaceChars; active = -1;
    list.replaceChildren(...entries.map((it, i) => el("li", { role: "option", onmousedown: (e) => { e.preventDefault(); accept(i); } },
      it.text, el("span", { class: "kind" }, it.kind))));
    list.hidden = entries.length === 0;
  };
  const hide = () => { list.hidden = true; items = []; };
  const accept = (i) => {
    const it = items[i];
    const pos = input.selectionStart;
    if (it.kind === "recent") {
      input.value = it.text;
    } else {
      input.value = input.value.slice(0, pos - replace) + it.text + input.value.slice(pos);
      input.selectionStart = input.selectionEnd = pos - replace + it.text.length;
    }
    hide();
    input.focus();
  };
  const highlight = () => [...list.children].forEach((li, i) => li.classList.toggle("active", i === active));
  let generation = 0;
  const update = async () => {
    const mine = ++generation;
    if (input.value.trim() === "") {
      show(loadHistory().map((e) => ({ text: e, kind: "recent" })), 0);
      return;
    }
    const { ctx, items: found } = await suggestions(input.value.slice(0, input.selectionStart));
    if (mine === generation && document.activeElement === input) show(found, ctx.prefix.length);
  };
  input.addEventListener("input", update);
  input.addEventListener("focus", update);
  input.addEventListener("blur", hide);
  input.addEventListener("keydown", (e) => {
    if (!list.hidden && items.length) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        active = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
        highlight();
        e.preventDefault();
        return;
      }
      if ((e.key === "Tab" || e.key === "Enter") && active >= 0) { accept(active); e.preventDefault(); return; }
      if (e.key === "Escape") { hide(); return; }
    }
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); hide(); run(); }
  });
  return { input, element: el("div", { class: "query" }, input, list) };
}

let chart = null;

function drawChart(box, legend, result, startMs, endMs, stepMs) {
  if (chart) { chart.destroy(); chart = null; }
  const shown = result.slice(0, MAX_CHART_SERIES);
  // Missing steps break the line instead of joining across the gap.
  const datasets = shown.map((s, i) => {
    const points = [];
    let last = null;
    for (const [t, v] of s.values) {
      const ms = Math.round(t * 1000);
      if (last !== null && ms - last > stepMs * 1.5) points.push({ x: last + stepMs, y: null });
      points.push({ x: ms, y: Number(v) });
      last = ms;
    }
    const color = PALETTE[i % PALETTE.length];
    return { label: seriesName(s.metric), data: points, borderColor: color, backgroundColor: color,
      borderWidth: 1.5, pointRadius: 0, pointHoverRadius: 3, spanGaps: false };
  });
  const canvas = el("canvas", { role: "img", "aria-label": `chart of ${shown.length} series` });
  box.replaceChildren(canvas);
  const span = endMs - startMs;
  // A time axis on Chart.js' linear scale with our own tick labels: no
  // date adapter needed.
  chart = new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: {
      animation: false, parsing: false, normalized: true, maintainAspectRatio: false,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      scales: {
        x: { type: "linear", min: startMs, max: endMs, afterBuildTicks: (axis) => { axis.ticks = timeTicks(axis.min, axis.max); },
          ticks: { autoSkip: false, maxRotation: 0, callback: (v) => formatTick(v, span) } },
        y: { ticks: { callback: (v) => formatNumber(v) } },
      },
      plugins: {
        legend: { display: false },  // the legend is HTML text below
        tooltip: { callbacks: { title: (items) => items.length ? formatTime(items[0].parsed.x) : "",
          label: (item) => `${item.dataset.label}: ${formatNumber(item.parsed.y)}` } },
      },
      onHover: (event) => showValuesAt(chart.scales.x.getValueForPixel(event.x)),
    },
  });
  // Hover: every series' value at the step under the cursor, in the legend.
  const byTime = shown.map((s) => new Map(s.values.map(([t, v]) => [Math.round(t * 1000), v])));
  const valueCells = [];
  const showValuesAt = (x) => {
    const t = startMs + Math.round((x - startMs) / stepMs) * stepMs;
    byTime.forEach((m, i) => { valueCells[i].textContent = m.has(t) ? formatNumber(Number(m.get(t))) : ""; });
  };
  legend.replaceChildren(...shown.map((s, i) => {
    const value = el("span", { class: "value" });
    valueCells.push(value);
    const item = el("li", { title: "click to hide or show", "aria-pressed": "true", tabindex: "0" },
      el("span", { class: "swatch", style: `background:${datasets[i].borderColor}` }),
      el("span", { class: "labels" }, datasets[i].label), value);
    const toggle = () => {
      const visible = !chart.isDatasetVisible(i);
      chart.setDatasetVisibility(i, visible);
      item.classList.toggle("off", !visible);
      item.setAttribute("aria-pressed", String(visible));
      chart.update();
    };
    item.addEventListener("click", toggle);
    item.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
    return item;
  }));
  if (result.length > shown.length) {
    legend.append(el("li", { class: "info" }, `${result.length - shown.length} more series not drawn (first ${MAX_CHART_SERIES} shown)`));
  }
}

function instantTable(data) {
  const rows = [];
  if (data.resultType === "vector") {
    for (const s of data.result) rows.push([seriesName(s.metric), s.value[1]]);
  } else if (data.resultType === "matrix") {
    for (const s of data.result) rows.push([seriesName(s.metric), s.values.map(([t, v]) => `${v} @${t}`).join("\n")]);
  } else if (data.resultType === "scalar" || data.resultType === "string") {
    rows.push([data.resultType, data.result[1]]);
  }
  if (rows.length === 0) return el("p", { class: "info" }, "empty result");
  return el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "series"), el("th", { class: "num" }, "value"))),
    el("tbody", {}, rows.map(([name, v]) => el("tr", {}, el("td", { class: "mono" }, name),
      el("td", { class: "num mono", style: "white-space:pre" }, v)))));
}

function graphPage() {
  const p = params();
  const state = { expr: p.get("expr") || "", range: p.get("range") || "1h", end: p.get("end") || "",
    step: p.get("step") || "", tab: p.get("tab") || "graph" };
  const box = queryBox(state.expr, () => run());
  const range = el("select", { id: "range", "aria-label": "range" },
    (RANGES.includes(state.range) ? RANGES : [state.range, ...RANGES]).map((r) => el("option", { value: r, selected: r === state.range }, r)));
  const end = el("input", { id: "end", type: "text", size: 19, placeholder: "now", value: state.end, "aria-label": "end time",
    title: "YYYY-MM-DD hh:mm:ss (local) or Unix seconds; empty for now" });
  const step = el("input", { id: "step", type: "text", size: 6, placeholder: "auto", value: state.step, "aria-label": "step",
    title: "resolution, e.g. 15s; empty for about 250 points" });
  const tabs = { graph: el("button", { role: "tab" }, "Graph"), table: el("button", { role: "tab" }, "Table") };
  const panel = el("div", { class: "panel", role: "tabpanel" });
  const status = el("div", { id: "status" });
  const selectTab = (name) => {
    state.tab = name;
    for (const [k, b] of Object.entries(tabs)) b.setAttribute("aria-selected", String(k === name));
  };
  tabs.graph.addEventListener("click", () => { selectTab("graph"); run(); });
  tabs.table.addEventListener("click", () => { selectTab("table"); run(); });
  selectTab(state.tab === "table" ? "table" : "graph");
  range.addEventListener("change", () => run());
  const execute = el("button", { class: "primary", id: "execute", onclick: () => run() }, "Execute");
  app().replaceChildren(
    box.element,
    el("div", { class: "controls" }, el("label", {}, "range"), range, el("label", {}, "end"), end,
      el("label", {}, "step"), step, execute),
    status,
    el("div", { class: "tabs", role: "tablist" }, tabs.graph, tabs.table),
    panel);

  let generation = 0;
  async function run() {
    const mine = ++generation;
    state.expr = box.input.value.trim();
    state.range = range.value;
    state.end = end.value.trim();
    state.step = step.value.trim();
    setParams({ expr: state.expr, range: state.range, end: state.end, step: state.step,
      tab: state.tab === "graph" ? "" : state.tab });
    status.replaceChildren();
    panel.replaceChildren();
    if (!state.expr) { panel.append(el("p", { class: "info" }, "Enter an expression and press Enter.")); return; }
    const rangeMs = parseDuration(state.range);
    const endMs = state.end ? parseEnd(state.end) : Date.now();
    if (rangeMs === null) { status.append(errorBox(`range "${state.range}": use a duration such as 1h`)); return; }
    if (endMs === null) { status.append(errorBox(`end "${state.end}": use YYYY-MM-DD hh:mm:ss or Unix seconds`)); return; }
    remember(state.expr);
    panel.append(el("p", { class: "info" }, "loading…"));
    try {
      if (state.tab === "table") {
        const data = await api("/api/v1/query", { query: state.expr, time: endMs / 1000 });
        if (mine !== generation) return;
        status.append(...warnings(data));
        panel.replaceChildren(instantTable(data));
        return;
      }
      let stepMs = state.step ? parseDuration(state.step) : null;
      if (state.step && stepMs === null) throw new ApiError(`step "${state.step}": use a duration such as 15s`);
      if (stepMs === null) stepMs = Math.max(1000, Math.ceil(rangeMs / TARGET_POINTS / 1000) * 1000);
      const startMs = endMs - rangeMs;
      const alignedEnd = Math.floor(endMs / stepMs) * stepMs;
      const data = await api("/api/v1/query_range", { query: state.expr, start: (alignedEnd - rangeMs) / 1000,
        end: alignedEnd / 1000, step: stepMs / 1000 });
      if (mine !== generation) return;
      status.append(...warnings(data));
      const chartBox = el("div", { class: "chart-box" });
      const legend = el("ul", { class: "legend", id: "legend", "aria-label": "series" });
      const summary = el("p", { class: "info", id: "summary" },
        `${data.result.length} series, step ${formatDuration(stepMs)}, ${formatTime(startMs)} to ${formatTime(endMs)}`);
      panel.replaceChildren(chartBox, summary, legend);
      if (data.result.length === 0) { chartBox.replaceChildren(el("p", { class: "info" }, "no data in this range")); return; }
      drawChart(chartBox, legend, data.result, alignedEnd - rangeMs, alignedEnd, stepMs);
    } catch (e) {
      if (mine !== generation) return;
      panel.replaceChildren();
      status.append(errorBox(e.message));
    }
  }
  run();
}

// ---------------------------------------------------------------------------
// Pages of other issues' data: each loads its data, draws a table.

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : "" }, h.name || h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c, i) => el("td", { class: headers[i].num ? "num" : "" }, c))))));
}

async function seriesPage() {
  const root = app();
  root.replaceChildren(el("p", { class: "info" }, "loading…"));
  try {
    const [names, metrics, tsdb] = await Promise.all([api("/api/v1/labels"), api("/api/v1/label/__name__/values"),
      api("/api/v1/status/tsdb", { limit: 20 }).catch(() => null)]);
    const detail = el("div", { id: "label-values" });
    const showValues = async (n) => {
      const values = await api(`/api/v1/label/${encodeURIComponent(n)}/values`);
      detail.replaceChildren(el("h2", {}, `${values.length} values of ${n}`),
        el("ul", { class: "legend" }, values.slice(0, 1000).map((v) => el("li", {}, v))),
        values.length > 1000 ? el("p", { class: "info" }, "first 1000 shown") : null);
    };
    const top = tsdb ? [
      el("h2", {}, `${tsdb.headStats.numSeries} series; the metric names with most series`),
      table(["metric", { name: "series", num: true }], tsdb.seriesCountByMetricName.map((m) =>
        [el("a", { href: "/graph?" + new URLSearchParams({ expr: `count by (__name__) (${m.name})`, tab: "table" }) }, m.name), m.value])),
      el("h2", {}, "label names with most values"),
      table(["label", { name: "values", num: true }], tsdb.labelValueCountByLabelName.map((l) => [l.name, l.value])),
    ] : [];
    root.replaceChildren(...top,
      el("h2", {}, `${metrics.length} metric names`),
      el("ul", { class: "legend", id: "metric-names" }, metrics.map((m) =>
        el("li", {}, el("a", { href: "/graph?" + new URLSearchParams({ expr: m, tab: "table" }) }, m)))),
      el("h2", {}, `${names.length} label names (click for values)`),
      el("ul", { class: "legend", id: "label-names" }, names.map((n) => el("li", { onclick: () => showValues(n) }, n))),
      detail);
  } catch (e) {
    root.replaceChildren(errorBox(e.message));
  }
}

function card(key, value) { return el("div", { class: "card" }, el("div", { class: "k" }, key), el("div", { class: "v" }, value)); }

function ago(seconds) {
  if (!seconds) return "never";  // only rejected so far
  const s = Date.now() / 1000 - seconds;
  if (s < 90) return `${Math.max(0, Math.round(s))} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

function uptime(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${Math.floor(seconds % 60)}s`;
}

// Reloads a page's data every `ms` while the page is open.
function every(ms, load) {
  load();
  setInterval(load, ms);
}

function statusPage() {
  every(5000, async () => {
    try {
      const [s, build] = await Promise.all([api("/api/v1/status/sheaf"), api("/api/v1/status/buildinfo")]);
      const st = s.storage;
      app().replaceChildren(
        el("div", { class: "cards", id: "status-cards" },
          card("version", s.version + (build.revision ? ` (${build.revision})` : "")),
          card("uptime", uptime(s.uptimeSeconds)),
          card("ingest", `${formatRate(s.ingest.samplesPerSecond)} samples/s`),
          card("agents since start", s.ingest.agentsSinceStart),
          card("series", st.series),
          card("samples", st.samples),
          card("disk", formatBytes(st.diskBytes)),
          card("bytes/sample", st.bytesPerSample.toFixed(2)),
          card("compaction debt", formatBytes(st.pendingCompactionBytes)),
          card("disk free", `${formatBytes(st.diskFreeBytes)} of ${formatBytes(st.diskTotalBytes)}`),
          card("writable", st.writable ? el("span", { class: "badge ok" }, "yes") : el("span", { class: "badge bad" }, "no: " + st.writeError)),
          card("maintenance failures", st.maintenanceFailures + (st.lastMaintenanceError ? ": " + st.lastMaintenanceError : ""))),
        el("h2", {}, "storage by column family"),
        table(["column family", { name: "bytes", num: true }], Object.entries(st.columnFamilyBytes).map(([k, v]) => [k, formatBytes(v)])
          .concat([["write-ahead log", formatBytes(st.walBytes)], ["memtables", formatBytes(st.memtableBytes)],
            ["block cache in use", formatBytes(st.blockCacheBytes)]])),
        el("h2", {}, "rule groups"),
        s.ruleGroups.length ? table(["file", "group", { name: "interval", num: true }, { name: "rules", num: true }],
          s.ruleGroups.map((g) => [g.file, g.name, formatDuration(g.intervalSeconds * 1000), g.rules]))
          : el("p", { class: "info" }, "no rule files loaded (--rule-files)"),
        el("h2", {}, "settings"),
        table(["setting", "value"], s.settings.map(([k, v]) => [k, v])));
    } catch (e) {
      app().replaceChildren(errorBox(e.message));
    }
  });
}

function agentsPage() {
  every(5000, async () => {
    try {
      const agents = await api("/api/v1/status/agents");
      app().replaceChildren(
        el("h2", {}, `${agents.length} agents pushed since sheafd started`),
        agents.length === 0 ? el("p", { class: "info" }, "no agent has pushed yet") :
          table(["agent", "host", "address", "last push", { name: "samples/s", num: true }, { name: "last sequence", num: true },
            { name: "samples", num: true }, "rejected", "state"],
          agents.map((a) => [a.id, a.host, a.address, ago(a.lastPush), formatRate(a.samplesPerSecond), a.lastSequence, a.samples,
            Object.entries(a.rejectedSamples).map(([r, n]) => `${r}: ${n}`).join(", ") || "none",
            a.behind ? el("span", { class: "badge bad", title: "newest sample " + formatTime(a.newestSample * 1000) }, "behind (spooling)")
              : el("span", { class: "badge ok" }, "current")])));
      app().querySelector("table")?.setAttribute("id", "agents");
    } catch (e) {
      app().replaceChildren(errorBox(e.message));
    }
  });
}

const TAIL_LINES = 1000;  // lines kept on the page; older ones scroll away

function tailPage() {
  const match = el("input", { id: "match", type: "text", size: 60, value: params().get("match") || "",
    placeholder: "series selector, e.g. node_load1{region=\"eu-west-1\"}", "aria-label": "series selector" });
  const state = el("span", { id: "tail-state", class: "info" });
  const counts = el("span", { id: "tail-counts", class: "info" });
  const out = el("pre", { class: "tail", id: "tail", "aria-live": "off" });
  // The stream is read with fetch() rather than EventSource, which cannot
  // send the Authorization header that sheafd's --auth-tokens asks for.
  // The body is still server-sent events ("data: JSON" blocks).
  let controller = null, lines = [], samples = 0, missed = 0;
  const stopTail = () => { if (controller) { controller.abort(); controller = null; } };
  const onEvent = (d) => {
    missed += d.missed;
    for (const s of d.series) {
      const name = seriesName(s.labels);
      for (const [t, v] of s.samples) { lines.push(`${formatTime(t * 1000)}  ${name}  ${formatNumber(v)}`); samples++; }
    }
    if (lines.length > TAIL_LINES) lines = lines.slice(-TAIL_LINES);
    out.textContent = lines.join("\n");
    out.scrollTop = out.scrollHeight;
    counts.textContent = `${samples} samples${missed ? `, ${missed} missed (the browser fell behind)` : ""}`;
  };
  const start = async () => {
    stopTail();
    setParams({ match: match.value.trim() });
    if (!match.value.trim()) { state.textContent = "enter a selector"; return; }
    lines = []; samples = 0; missed = 0; out.textContent = "";
    state.textContent = "connecting…";
    const mine = new AbortController();
    controller = mine;
    try {
      const r = await fetch("/api/v1/tail?" + new URLSearchParams({ match: match.value.trim() }),
        { headers: authHeaders(), signal: mine.signal });
      if (!r.ok) {
        // Refused (no token, a bad selector, too many tails): the API's message.
        let message = `HTTP ${r.status}`;
        try { message = (await r.json()).error || message; } catch (e) { /* not JSON */ }
        state.textContent = "failed: " + message;
        return;
      }
      state.textContent = "live";
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          // Comment lines (": keepalive") carry nothing.
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
          if (data) onEvent(JSON.parse(data));
        }
      }
      if (controller === mine) state.textContent = "disconnected (press Start)";
    } catch (e) {
      if (e.name !== "AbortError") state.textContent = "disconnected: " + e.message;
    } finally {
      if (controller === mine) controller = null;
    }
  };
  match.addEventListener("keydown", (e) => { if (e.key === "Enter") start(); });
  app().replaceChildren(
    el("div", { class: "controls" }, el("label", {}, "match"), match,
      el("button", { class: "primary", id: "start", onclick: start }, "Start"),
      el("button", { onclick: () => { stopTail(); state.textContent = "stopped"; } }, "Stop"), state, counts),
    out);
  if (match.value) start();
}

// ---------------------------------------------------------------------------

function main() {
  const page = location.pathname.replace(/^\/+/, "").split("/")[0] || "graph";
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("current", a.dataset.page === page);
  const token = document.getElementById("token");
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("change", () => {
    if (token.value) sessionStorage.setItem(TOKEN_KEY, token.value); else sessionStorage.removeItem(TOKEN_KEY);
  });
  const pages = { graph: graphPage, series: seriesPage, agents: agentsPage, status: statusPage,
    tail: tailPage };
  (pages[page] || graphPage)();
}

main();
