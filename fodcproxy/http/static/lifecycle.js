// The lifecycle panel (GET /cluster/lifecycle, docs/console.md): a table of groups × nodes with
// the size and segments each node holds of each group, the schema verdict of every group with
// the issues behind it, the collection errors, and how many agents answered.
//
// A collection asks every agent (a liaison's inspection can take tens of seconds) and advances
// the proxy's two-round schema checks, so the panel collects once when the page opens and then
// only when "Collect now" is pressed, not on every refresh.

import { ApiError, collectHeaders, getJson } from "./api.js";
import { formatValue, h, localTime } from "./format.js";

// The console waits this long for an answer: longer than the proxy's default --lifecycle-timeout.
const TIMEOUT_MS = 120_000;

const VERDICTS = {
  CONSISTENCY_STATUS_CONSISTENT: ["consistent", "ok"],
  CONSISTENCY_STATUS_INCONSISTENT: ["inconsistent", "bad"],
  CONSISTENCY_STATUS_UNKNOWN: ["unknown", "warn"],
};

const ISSUES = {
  SCHEMA_ISSUE_TYPE_MISSING_IN_CACHE: "missing in the node's cache",
  SCHEMA_ISSUE_TYPE_ORPHAN: "on the node, not in the registry",
  SCHEMA_ISSUE_TYPE_CACHE_STALE: "the node's cache is behind the registry",
  SCHEMA_ISSUE_TYPE_RUNTIME_NOT_APPLIED: "changed in the cache, not applied at runtime",
};

const nodeName = (info) => info?.node?.metadata?.name || "(unnamed node)";
const num = (v) => (v === null || v === undefined || v === "" ? null : Number(v));

function verdictBadge(consistency) {
  if (!consistency) return h("span", { class: "badge verdict none", title: "no schema fingerprints were reported for this group" }, "no schema data");
  const [text, tone] = VERDICTS[consistency.status] ?? [String(consistency.status), "warn"];
  const n = (consistency.issues ?? []).length;
  return h("span", { class: `badge verdict ${tone}` }, n ? `${text} · ${n} issue${n === 1 ? "" : "s"}` : text);
}

function cell(info) {
  if (!info) return h("td", { class: "empty muted" }, "–");
  const segments = info.segment_info ?? [];
  const shards = new Set(segments.flatMap((s) => (s.shard_info ?? []).map((x) => x.shard_id)));
  return h("td", {},
    h("span", { class: "size" }, formatValue(num(info.data_size_bytes), "bytes")),
    h("span", { class: "muted small" },
      ` ${segments.length} segment${segments.length === 1 ? "" : "s"}, ${shards.size} shard${shards.size === 1 ? "" : "s"}`));
}

function issueList(group) {
  const issues = group.schema_consistency?.issues ?? [];
  const errors = group.errors ?? [];
  if (!issues.length && !errors.length) return null;
  return h("ul", { class: "lifecycle-notes" },
    issues.map((i) => h("li", { class: "issue" },
      h("code", {}, `${i.kind} ${i.name}`), " on ", h("code", {}, i.node), ": ",
      ISSUES[i.type] ?? i.type)),
    errors.map((e) => h("li", { class: "error" }, e)));
}

/** Render one /cluster/lifecycle answer into `el`. */
export function renderLifecycle(el, body, headers, at = Date.now()) {
  const groups = body.groups ?? [];
  const nodes = [...new Set(groups.flatMap((g) => (g.data_info ?? []).map(nodeName)))].sort();
  const s = body.agent_summary ?? {};
  const collect = collectHeaders(headers);
  const registry = headers.get("X-Fodc-Registry-Agent");
  const summary = h("p", { class: "lifecycle-summary muted small" },
    `Collected ${localTime(at).slice(11)}: ${s.responded ?? 0} of ${s.requested ?? 0} asked agents answered`
      + ` (${s.total ?? 0} registered)`,
    collect.missed.length ? `; no answer from ${collect.missed.join(", ")}` : "",
    registry ? `; registry read from ${registry}` : "; no registry truth");
  const parts = [summary];
  if (body.error) parts.push(h("p", { class: "problem" }, body.error));
  if (!groups.length) {
    if (!body.error) parts.push(h("p", { class: "muted" }, "No groups reported."));
    el.replaceChildren(...parts);
    return;
  }
  const rows = groups.map((g) => {
    const byNode = new Map((g.data_info ?? []).map((d) => [nodeName(d), d]));
    const status = g.schema_consistency?.status ?? "none";
    return h("tbody", { dataset: { group: g.name, status } },
      h("tr", {},
        h("th", { scope: "row" }, h("span", { class: "group-name" }, g.name),
          h("span", { class: "muted small" }, ` ${(g.catalog || "").replace(/^CATALOG_/, "").toLowerCase()}`)),
        h("td", {}, verdictBadge(g.schema_consistency)),
        nodes.map((n) => cell(byNode.get(n)))),
      issueList(g) && h("tr", { class: "notes" }, h("td", { colspan: 2 + nodes.length }, issueList(g))));
  });
  parts.push(h("div", { class: "table-wrap lifecycle-wrap" },
    h("table", { class: "config lifecycle" },
      h("thead", {}, h("tr", {}, h("th", {}, "Group"), h("th", {}, "Schema"),
        nodes.map((n) => h("th", { class: "node-col" }, n)))),
      rows)));
  el.replaceChildren(...parts);
}

export class LifecyclePanel {
  /** `els`: {body, button}; `guard(panel, render)` and `report(key, message)`/`clear(key)` are
   *  app.js's, so failures show in the page's error list like the other panels'. */
  constructor(els, { guard, report, clear }) {
    this.els = els;
    this.guard = guard;
    this.report = report;
    this.clear = clear;
    this.running = null;
    els.button.addEventListener("click", () => this.load());
  }

  load() {
    if (this.running) return this.running;
    this.els.button.disabled = true;
    this.els.body.setAttribute("aria-busy", "true");
    this.running = getJson("cluster/lifecycle", {}, { timeoutMs: TIMEOUT_MS })
      .then(({ body, headers }) => {
        this.clear("lifecycle");
        this.guard("lifecycle", () => renderLifecycle(this.els.body, body, headers));
      })
      .catch((err) => {
        this.report("lifecycle", err instanceof ApiError ? err.message : String(err));
        if (!this.els.body.querySelector("table")) {
          this.els.body.replaceChildren(h("p", { class: "muted" }, "Lifecycle unavailable (see the error above)."));
        }
      })
      .finally(() => {
        this.running = null;
        this.els.button.disabled = false;
        this.els.body.removeAttribute("aria-busy");
        document.body.dataset.lifecycle = "loaded";
      });
    return this.running;
  }
}
