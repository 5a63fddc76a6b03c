// Helpers shared by the panels: building DOM nodes, and formatting numbers, units and times.
//
// Everything the API returns (node ids, labels, configuration values) is put into the page as
// text, never as HTML, so an odd label value cannot inject markup.

/** Create an element: h("li", {class: "x", dataset: {id: "a"}, onclick: f}, "text", child). */
export function h(tag, props = {}, ...children) {
  return fill(document.createElement(tag), props, children);
}

/** The same for SVG elements. */
export function s(tag, props = {}, ...children) {
  return fill(document.createElementNS("http://www.w3.org/2000/svg", tag), props, children);
}

function fill(el, props, children) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key === "className" ? "class" : key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// ---- units -------------------------------------------------------------------------------

const CUMULATIVE_SUFFIX = /_(total|count|sum|bucket)$/;

/**
 * Guess how to show a metric from its name and type (Prometheus naming conventions).
 * Returns {unit: "bytes"|"seconds"|"ratio"|"percent"|"", rate: bool, label: "bytes/s"...}.
 * `rate` is true for cumulative series (counters, and a histogram's or summary's _sum, _count
 * and _bucket), which are more readable as a per-second rate than as an ever-growing total.
 */
export function unitOf(name, type) {
  const base = name.replace(CUMULATIVE_SUFFIX, "");
  const suffixed = base !== name;
  const cumulative = type === "counter" || name.endsWith("_total")
    || (suffixed && (type === "histogram" || type === "summary"));
  let unit = "";
  // _count and _bucket count observations, whatever the observed unit is.
  if (!name.endsWith("_count") && !name.endsWith("_bucket")) {
    if (base.endsWith("_bytes")) unit = "bytes";
    else if (base.endsWith("_seconds")) unit = "seconds";
    else if (base.endsWith("_ratio")) unit = "ratio";
    else if (base.endsWith("_percent")) unit = "percent";
  }
  return { unit, rate: cumulative, label: unitLabel(unit, cumulative) };
}

/** "bytes", "seconds/s", "per second", "%", "" ... as an axis caption. */
export function unitLabel(unit, rate) {
  const name = { bytes: "bytes", seconds: "seconds", ratio: "%", percent: "%" }[unit] ?? "";
  if (!rate) return name;
  return name ? `${name}/s` : "per second";
}

const BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
const DECIMAL = ["", "k", "M", "G", "T", "P"];

/** Format a value in `unit` ("" is a plain number); `rate` appends "/s". Null shows as "–". */
export function formatValue(value, unit = "", rate = false) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const per = rate ? "/s" : "";
  switch (unit) {
    case "bytes": return scaled(value, 1024, BINARY) + per;
    case "seconds": return duration(value) + per;
    case "ratio": return `${round(value * 100)} %${per}`;
    case "percent": return `${round(value)} %${per}`;
    default: return scaled(value, 1000, DECIMAL).trim() + per;
  }
}

function scaled(value, step, names) {
  let v = Math.abs(value);
  let i = 0;
  while (v >= step && i < names.length - 1) { v /= step; i++; }
  const text = `${Math.sign(value) < 0 ? "-" : ""}${round(v)}`;
  return names[i] ? `${text} ${names[i]}` : text;
}

/** A duration in seconds as "850 µs", "12.5 ms", "3.2 s", "4.5 min", "2.1 h". */
export function duration(seconds) {
  const a = Math.abs(seconds);
  if (a === 0) return "0 s";
  if (a < 1e-3) return `${round(seconds * 1e6)} µs`;
  if (a < 1) return `${round(seconds * 1e3)} ms`;
  if (a < 120) return `${round(seconds)} s`;
  if (a < 7200) return `${round(seconds / 60)} min`;
  return `${round(seconds / 3600)} h`;
}

/** Three significant digits at most, without a trailing ".0". */
export function round(v) {
  if (v === 0 || !Number.isFinite(v)) return String(v);
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(v))));
  return String(Number(v.toFixed(Math.min(digits, 6))));
}

// ---- times ---------------------------------------------------------------------------------

/** "just now", "12 s ago", "3 min ago", "2 h ago", "4 d ago" for a time in ms since the epoch. */
export function ago(ms, now = Date.now()) {
  const s = Math.round((now - ms) / 1000);
  if (s < 2) return "just now";
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** A local date-time for people: "2026-11-28 05:27:57". */
export function localTime(ms) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} `
    + `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** The value of an <input type="datetime-local"> for a time in ms (local time, seconds). */
export function toLocalInput(ms) {
  return localTime(ms).replace(" ", "T");
}
