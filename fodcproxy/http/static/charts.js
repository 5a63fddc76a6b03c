// The metrics panel: a searchable list of the metric names found in /metrics-windows, and one
// line chart (uPlot) per chosen metric with one line per node (per label set, when a metric has
// labels of its own), in a unit guessed from the name, counters drawn as a rate per second.

import uPlot from "./vendor/uPlot.esm.js";
import { parseTime, pointValue } from "./api.js";
import { formatValue, h, unitLabel, unitOf } from "./format.js";

const HEIGHT = 220;
const MAX_LISTED = 300;
const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777",
  "#65a30d", "#475569", "#ea580c"];
const DASHES = [[], [8, 4], [2, 3], [12, 4, 2, 4]];
// Labels every sample carries that name the node, not the series (README "GET /metrics").
const NODE_KEYS = new Set(["agent_id", "node_role", "node_ip", "node_port", "pod_name"]);

/** [[t, v], ...] of one /metrics-windows series, as a per-second rate when `rate`. */
function points(series, rate) {
  const pts = series.data.map((d) => [parseTime(d.timestamp) / 1000, pointValue(d.value)]);
  if (!rate) return pts;
  const out = [];
  for (let i = 1; i < pts.length; i++) {
    const [t0, v0] = pts[i - 1];
    const [t1, v1] = pts[i];
    if (v0 === null || v1 === null || t1 <= t0) continue;
    const delta = v1 >= v0 ? v1 - v0 : v1;  // a counter that went down was reset to zero
    out.push([t1, delta / (t1 - t0)]);
  }
  return out;
}

/** uPlot's columnar data: the union of all times, and each line's value at each (or null). */
function align(lines) {
  const times = [...new Set(lines.flatMap((l) => l.pts.map(([t]) => t)))].sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = lines.map((l) => {
    const ys = new Array(times.length).fill(null);
    for (const [t, v] of l.pts) ys[index.get(t)] = v;
    return ys;
  });
  return [times, ...columns];
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export class ChartsPanel {
  /**
   * @param {object} els  list (the charts' container), picker, search, count
   * @param {object} state  the console state: metrics (names chosen), rate (bool)
   * @param {() => void} onChange  called when the operator adds or removes a metric
   */
  constructor(els, state, onChange) {
    this.els = els;
    this.state = state;
    this.onChange = onChange;
    this.byName = new Map();
    this.charts = new Map();  // name -> {fig, plot, key, window}
    this.colors = new Map();  // agent_id -> palette index, stable across charts
    this.listed = "";
    this.window = { from: 0, to: 0 };
    this.nodes = new Map();
    els.search.addEventListener("input", () => this.renderPicker(true));
    new ResizeObserver(() => this.resize()).observe(els.list);
    // The axes take their colours from the page's CSS when a chart is made: remake the charts
    // when the light/dark scheme changes.
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
      for (const chart of this.charts.values()) chart.key = "";
      this.render();
    });
  }

  /** Take a fresh /metrics-windows answer for the window {from, to} (Unix seconds);
   *  `nodes` is /cluster's node list (for stable colours and to tell node labels apart). */
  update(series, window, nodes) {
    this.byName = new Map();
    for (const s of series) {
      if (!this.byName.has(s.name)) this.byName.set(s.name, []);
      this.byName.get(s.name).push(s);
    }
    this.window = window;
    this.nodes = new Map(nodes.map((n) => [n.node_id, n]));
    for (const id of [...this.nodes.keys()].sort()) {
      if (!this.colors.has(id)) this.colors.set(id, this.colors.size);
    }
    if (!this.state.picked && this.byName.size) {
      // Nothing chosen yet (first visit, no #metrics= in the URL): start with a few charts.
      this.state.metrics = this.suggestions();
      this.state.picked = true;
    }
    this.renderPicker(false);
    this.render();
  }

  /** Metric names worth showing first when the operator has chosen none. */
  suggestions(count = 4) {
    const names = [...this.byName.keys()].sort();
    const plain = names.filter((n) => !n.startsWith("fodc_") && !/_(bucket|created)$/.test(n));
    return (plain.length ? plain : names).slice(0, count);
  }

  renderPicker(force) {
    const { picker, search, count } = this.els;
    const chosen = new Set(this.state.metrics);
    const names = [...new Set([...this.byName.keys(), ...chosen])].sort();
    const terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = names.filter((n) => terms.every((t) => n.toLowerCase().includes(t)));
    // Rebuilding the list while the operator tabs through it would lose the focus: only do it
    // when something in it changed.
    const key = JSON.stringify([shown, [...chosen]]);
    if (!force && key === this.listed) return;
    this.listed = key;
    count.textContent = `${shown.length} of ${names.length} metrics`
      + (shown.length > MAX_LISTED ? `, first ${MAX_LISTED} listed` : "");
    picker.replaceChildren(...shown.slice(0, MAX_LISTED).map((name) => {
      const n = this.byName.get(name)?.length ?? 0;
      return h("li", {}, h("label", {},
        h("input", { type: "checkbox", value: name, checked: chosen.has(name), onchange: (e) => this.toggle(name, e.target.checked) }),
        h("span", { class: "metric-name" }, name),
        h("span", { class: "muted small", title: `${n} series` }, n ? String(n) : "no data")));
    }));
  }

  toggle(name, on) {
    const rest = this.state.metrics.filter((m) => m !== name);
    this.state.metrics = on ? [...rest, name] : rest;
    this.onChange();
    this.renderPicker(true);
    this.render();
  }

  /** Add, update and remove charts to match state.metrics. */
  render() {
    const { list } = this.els;
    const wanted = this.state.metrics;
    for (const [name, chart] of this.charts) {
      if (!wanted.includes(name)) {
        chart.plot?.destroy();
        this.charts.delete(name);
      }
    }
    if (!wanted.length) {
      list.replaceChildren(h("p", { class: "muted" }, "Choose metrics on the left to draw them."));
      return;
    }
    list.replaceChildren(...wanted.map((name) => this.chart(name).fig));
    for (const name of wanted) this.draw(name);
  }

  chart(name) {
    if (!this.charts.has(name)) {
      const fig = h("figure", { class: "chart", dataset: { metric: name } });
      this.charts.set(name, { fig, plot: null, key: "", window: { ...this.window } });
    }
    return this.charts.get(name);
  }

  /** The lines of metric `name`: {label, agent, pts}, sorted, with the unit to draw them in. */
  lines(name) {
    const series = this.byName.get(name) ?? [];
    const type = series[0]?.type ?? "";
    const unit = unitOf(name, type);
    const rate = unit.rate && this.state.rate;
    const lines = series.map((s) => {
      const node = this.nodes.get(s.agent_id);
      const nodeKeys = new Set(Object.keys(node?.labels ?? {}).map((k) => `node_${k}`));
      const own = Object.entries(s.labels).filter(([k]) => !NODE_KEYS.has(k) && !nodeKeys.has(k)
        && !(node === undefined && k.startsWith("node_")));
      const extra = own.map(([k, v]) => `${k}=${v}`).join(", ");
      return { label: extra ? `${s.agent_id} {${extra}}` : s.agent_id, agent: s.agent_id, pts: points(s, rate) };
    }).sort((a, b) => a.label.localeCompare(b.label));
    return { lines, unit: unit.unit, rate, type, description: series[0]?.description ?? "" };
  }

  draw(name) {
    const chart = this.charts.get(name);
    const { lines, unit, rate, type, description } = this.lines(name);
    const withData = lines.filter((l) => l.pts.some(([, v]) => v !== null));
    const pointsCount = withData.reduce((n, l) => n + l.pts.filter(([, v]) => v !== null).length, 0);
    const unitText = unitLabel(unit, rate);
    Object.assign(chart.fig.dataset, { series: withData.length, points: pointsCount, unit: unitText });

    const notes = [type, rate ? "shown as a rate per second" : null, description].filter(Boolean);
    const caption = h("figcaption", {},
      h("div", { class: "chart-head" },
        h("code", { class: "chart-title" }, name),
        unitText ? h("span", { class: "unit" }, unitText) : null,
        h("button", { type: "button", class: "link", "aria-label": `Remove the chart of ${name}`, onclick: () => this.toggle(name, false) }, "Remove")),
      notes.length ? h("p", { class: "chart-note muted small" }, notes.join(" · ")) : null);

    if (!withData.length) {
      chart.plot?.destroy();
      chart.plot = null;
      chart.key = "";
      const why = !this.byName.has(name) ? "No data for this metric in this range (with these filters)."
        : rate ? "Not enough points yet: a rate needs two samples of the counter."
          : "Only missing values (NaN or infinite) in this range.";
      chart.fig.replaceChildren(caption, h("p", { class: "empty muted" }, why));
      return;
    }
    chart.window.from = this.window.from;
    chart.window.to = this.window.to;
    const data = align(withData);
    const key = JSON.stringify([withData.map((l) => l.label), unit, rate]);
    const format = (v) => formatValue(v, unit, rate);
    if (chart.plot && chart.key === key) {
      chart.fig.replaceChild(caption, chart.fig.querySelector("figcaption"));
      chart.plot.setData(data);
      return;
    }
    chart.plot?.destroy();
    const holder = h("div", { class: "plot" });
    chart.fig.replaceChildren(caption, holder);
    chart.key = key;
    const perNode = new Map();
    const fg = cssVar("--muted") || "#555";
    const grid = cssVar("--grid") || "#e5e7eb";
    const win = chart.window;
    chart.plot = new uPlot({
      width: Math.max(holder.clientWidth, 300),
      height: HEIGHT,
      scales: { x: { time: true, range: () => [win.from, win.to] } },
      series: [{}, ...withData.map((l) => {
        const nth = perNode.get(l.agent) ?? 0;
        perNode.set(l.agent, nth + 1);
        const color = PALETTE[(this.colors.get(l.agent) ?? 0) % PALETTE.length];
        return { label: l.label, stroke: color, width: 1.5, dash: DASHES[nth % DASHES.length], spanGaps: true,
          value: (u, v) => format(v), points: { size: 5, fill: color } };
      })],
      axes: [
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
        { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 80,
          values: (u, splits) => splits.map(format) },
      ],
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
      focus: { alpha: 0.3 },
    }, data, holder);
  }

  resize() {
    for (const chart of this.charts.values()) {
      const holder = chart.fig.querySelector(".plot");
      if (chart.plot && holder && holder.clientWidth) {
        chart.plot.setSize({ width: holder.clientWidth, height: HEIGHT });
      }
    }
  }
}
