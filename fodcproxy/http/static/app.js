// The console's entry point: the state (mirrored in the URL's #fragment, so a view can be
// bookmarked or shared), the refresh loop, the controls, and the error list. Each panel lives
// in its own module: proxy.js, topology.js, charts.js, lifecycle.js (which collects on its own
// schedule: once on opening, then on its button).

import { collectHeaders, getJson, setToken } from "./api.js";
import { ChartsPanel } from "./charts.js";
import { LifecyclePanel } from "./lifecycle.js";
import { duration, h, localTime, toLocalInput } from "./format.js";
import { renderDiagnostics } from "./diagnostics.js";
import { renderProxy, summarizeStatus } from "./proxy.js";
import { TopologyPanel } from "./topology.js";

const $ = (id) => document.getElementById(id);
const RANGES = { "5m": 5, "15m": 15, "60m": 60 };

// ---- problems: whatever goes wrong is listed at the top of the page, not only logged --------

const problems = new Map();  // key -> message; an API problem clears when that call succeeds
let scriptErrors = 0;

function report(key, message) {
  problems.set(key, message);
  showProblems();
}

function clear(key) {
  if (problems.delete(key)) showProblems();
}

function showProblems() {
  const items = [...problems.values()].map((m) => h("li", {}, m));
  $("errors").replaceChildren(...(items.length ? [h("ul", {}, items)] : []));
}

// Capture phase, so that a stylesheet or script that fails to load is reported too.
window.addEventListener("error", (e) => {
  const what = e.target && e.target !== window ? `could not load ${e.target.src || e.target.href}`
    : `${e.message} (${e.filename}:${e.lineno})`;
  report(`script ${++scriptErrors}`, `Console error: ${what}`);
}, true);
window.addEventListener("unhandledrejection", (e) => {
  report(`script ${++scriptErrors}`, `Console error: ${e.reason?.message ?? e.reason}`);
});
document.addEventListener("securitypolicyviolation", (e) => {
  report(`script ${++scriptErrors}`, `Blocked by the page's security policy: ${e.violatedDirective} ${e.blockedURI}`);
});

/** Run one panel's rendering; a bug in one panel is reported and leaves the others working. */
function guard(panel, render) {
  try {
    render();
    clear(`render ${panel}`);
  } catch (err) {
    console.error(err);
    report(`render ${panel}`, `Console error in the ${panel} panel: ${err.message}`);
  }
}

// ---- state ------------------------------------------------------------------------------------

const state = {
  metrics: [],     // chosen metric names, in chart order
  picked: false,   // false until the operator (or the URL) chose metrics, or defaults were picked
  range: "15m",    // a RANGES key or "custom"
  from: null,      // custom range, ms since the epoch
  to: null,
  role: "",
  node: "",
  rate: true,      // counters as a rate per second
  selected: null,  // node shown in the detail view
  refresh: 15,     // seconds; 0 = off
};

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has("metrics")) {
    state.metrics = p.get("metrics").split(",").filter(Boolean);
    state.picked = true;
  }
  if (p.get("range") in RANGES || p.get("range") === "custom") state.range = p.get("range");
  state.from = Date.parse(p.get("from") ?? "") || null;
  state.to = Date.parse(p.get("to") ?? "") || null;
  state.role = p.get("role") ?? "";
  state.node = p.get("node") ?? "";
  state.rate = p.get("rate") !== "0";
  state.selected = p.get("select") || null;
  if (p.has("refresh") && Number.isFinite(Number(p.get("refresh")))) state.refresh = Number(p.get("refresh"));
}

function writeHash() {
  const p = new URLSearchParams();
  if (state.metrics.length) p.set("metrics", state.metrics.join(","));
  if (state.range !== "15m") p.set("range", state.range);
  if (state.range === "custom" && state.from && state.to) {
    p.set("from", new Date(state.from).toISOString());
    p.set("to", new Date(state.to).toISOString());
  }
  if (state.role) p.set("role", state.role);
  if (state.node) p.set("node", state.node);
  if (!state.rate) p.set("rate", "0");
  if (state.selected) p.set("select", state.selected);
  if (state.refresh !== 15) p.set("refresh", String(state.refresh));
  const hash = p.toString().replace(/%2C/g, ",");
  history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
}

/** The chart window {from, to} in Unix seconds, or null with a problem reported. */
function chartWindow() {
  if (state.range !== "custom") {
    const to = Date.now() / 1000;
    return { from: to - RANGES[state.range] * 60, to };
  }
  if (!state.from || !state.to || state.from >= state.to) {
    report("range", "Custom time range: give both ends, with From before To.");
    return null;
  }
  clear("range");
  return { from: state.from / 1000, to: state.to / 1000 };
}

// ---- panels -----------------------------------------------------------------------------------

const topology = new TopologyPanel(
  { graph: $("graph"), tiers: $("tiers"), edges: $("edges"), callList: $("call-list"), detail: $("node-detail") },
  (id) => {
    state.selected = id;
    writeHash();
    topology.select(id);
  });

const charts = new ChartsPanel(
  { list: $("chart-list"), picker: $("metric-list"), search: $("metric-search"), count: $("metric-count") },
  state,
  () => {
    state.picked = true;
    writeHash();
  });

const lifecycle = new LifecyclePanel(
  { body: $("lifecycle-body"), button: $("lifecycle-collect") }, { guard, report, clear });

/** Keep a <select>'s options in step with `values`, keeping the current choice even if absent. */
function fillSelect(select, first, values, current) {
  const all = [...new Set([...values, ...(current ? [current] : [])])].sort();
  select.replaceChildren(h("option", { value: "" }, first),
    ...all.map((v) => h("option", { value: v }, v)));
  select.value = current;
}

function renderFilters(nodes) {
  fillSelect($("filter-role"), "all roles", nodes.map((n) => n.node_role), state.role);
  const inRole = nodes.filter((n) => !state.role || n.node_role === state.role);
  fillSelect($("filter-node"), "all nodes", inRole.map((n) => n.node_id), state.node);
}

function renderChartStatus(collect) {
  const parts = [];
  if (collect.asked !== null) {
    parts.push(`Collected from ${collect.answered} of ${collect.asked} agents`
      + (collect.seconds === null ? "" : ` in ${duration(collect.seconds)}`));
  }
  if (collect.missed.length) {
    parts.push(`missed the deadline: ${collect.missed.join(", ")}${collect.missedTruncated ? ", …" : ""}`);
  }
  $("chart-status").textContent = parts.join(" · ");
}

// ---- refresh ----------------------------------------------------------------------------------

let timer = null;
let running = null;  // the refresh in progress, if any
let again = false;   // whether another must follow it
let refreshes = 0;
let chartsUpdated = null;  // when the charts last got data (ms)
let missedWhileHidden = false;

function settled(key, result) {
  if (result.status === "fulfilled") {
    clear(key);
    return result.value;
  }
  report(key, result.reason?.message ?? String(result.reason));
  return null;
}

async function load() {
  const win = chartWindow();
  const iso = (seconds) => new Date(seconds * 1000).toISOString();
  const windowParams = win && { start_time: iso(win.from), end_time: iso(win.to), role: state.role, agent_id: state.node };
  const answers = await Promise.allSettled([
    getJson("health"),
    getJson("cluster"),
    getJson("cluster/config"),
    getJson("status"),
    win ? getJson("metrics-windows", windowParams) : Promise.resolve(null),
    getJson("diagnostics"),
    getJson("pressure-profiles"),
  ]);
  // 401: the proxy wants a token (only /health answers without one); ask for it.
  $("token-form").hidden = !answers.some((r) => r.status === "rejected" && r.reason?.status === 401);
  const [health, cluster, config, status, windows, crashes, profiles] = answers.map(
    (r, i) => settled(["health", "cluster", "config", "status", "windows", "diagnostics",
      "pressure-profiles"][i], r));

  const nodes = cluster?.body.nodes ?? [];
  const statusOf = new Map(nodes.map((n) => [n.node_id, n.status]));
  const summary = status && summarizeStatus(status.body);

  guard("proxy", () => renderProxy($("proxy-stats"), health?.body, summary, statusOf));
  guard("topology", () => {
    if (cluster) topology.update(cluster.body, config?.body ?? null, summary?.agents ?? new Map());
    else $("tiers").replaceChildren(h("p", { class: "muted" }, "Topology unavailable (see the error above)."));
  });
  guard("filters", () => renderFilters(nodes));
  guard("charts", () => {
    if (windows) {
      charts.update(windows.body, win, nodes);
      renderChartStatus(collectHeaders(windows.headers));
      chartsUpdated = Date.now();
    } else {
      // Keep the charts (a passing failure should not blank them) but say they are stale.
      $("chart-status").textContent = chartsUpdated
        ? `Charts not updated since ${localTime(chartsUpdated).slice(11)}: see the problem above.`
        : "No chart data: see the problem above.";
    }
  });

  guard("diagnostics", () => renderDiagnostics($("diagnostics-body"), crashes?.body ?? null,
    profiles?.body ?? null));

  refreshes += 1;
  document.body.dataset.loaded = "true";
  document.body.dataset.refreshes = String(refreshes);
  $("updated").textContent = `Updated ${localTime(Date.now()).slice(11)}`;
}

/** Refresh every panel now, then schedule the next refresh. If one is already running, another
 *  follows as soon as it ends (the settings may have changed since it began). */
function refresh() {
  clearTimeout(timer);
  if (running) {
    again = true;
    return running;
  }
  running = load().finally(() => {
    running = null;
    if (again) {
      again = false;
      refresh();
    } else {
      schedule();
    }
  });
  return running;
}

function schedule() {
  clearTimeout(timer);
  if (state.refresh > 0) {
    timer = setTimeout(() => {
      if (document.hidden) missedWhileHidden = true;  // no polling from a background tab
      else refresh();
    }, state.refresh * 1000);
  }
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && missedWhileHidden) {
    missedWhileHidden = false;
    refresh();
  }
});

// ---- controls ---------------------------------------------------------------------------------

function showCustomRange() {
  const custom = state.range === "custom";
  $("custom-range").hidden = !custom;
  if (custom) {
    $("range-from").value = state.from ? toLocalInput(state.from) : "";
    $("range-to").value = state.to ? toLocalInput(state.to) : "";
  }
}

function changed() {
  writeHash();
  refresh();
}

function setUp() {
  readHash();
  $("refresh-interval").value = String(state.refresh);
  if ($("refresh-interval").value !== String(state.refresh)) {
    $("refresh-interval").append(h("option", { value: state.refresh }, `every ${state.refresh} s`));
    $("refresh-interval").value = String(state.refresh);
  }
  $("range").value = state.range;
  $("rate").checked = state.rate;
  showCustomRange();
  topology.selected = state.selected;

  $("chart-controls").addEventListener("submit", (e) => e.preventDefault());
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setToken($("token").value.trim());
    $("token").value = "";
    refresh();
  });
  $("refresh-now").addEventListener("click", () => refresh());
  $("refresh-interval").addEventListener("change", (e) => {
    state.refresh = Number(e.target.value);
    writeHash();
    schedule();
  });
  $("range").addEventListener("change", (e) => {
    state.range = e.target.value;
    if (state.range === "custom" && !(state.from && state.to)) {
      state.to = Date.now();
      state.from = state.to - 60 * 60 * 1000;
    }
    showCustomRange();
    changed();
  });
  for (const id of ["range-from", "range-to"]) {
    $(id).addEventListener("change", () => {
      state.from = new Date($("range-from").value).getTime() || null;
      state.to = new Date($("range-to").value).getTime() || null;
      changed();
    });
  }
  $("filter-role").addEventListener("change", (e) => {
    state.role = e.target.value;
    state.node = "";
    changed();
  });
  $("filter-node").addEventListener("change", (e) => {
    state.node = e.target.value;
    changed();
  });
  $("rate").addEventListener("change", (e) => {
    state.rate = e.target.checked;
    writeHash();
    guard("charts", () => charts.render());
  });
  refresh();
  lifecycle.load();
}

setUp();
