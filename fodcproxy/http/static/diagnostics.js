// The diagnostics panel: crash records per node (GET /diagnostics), with the panic, its stack
// and breadcrumbs, and memory-pressure captures (GET /pressure-profiles) with a download link per
// profile (GET /pressure-profiles/{pod}/{id}/{type}). Everything shown is asked afresh from the
// agents on each refresh: the proxy keeps no records.

import { h } from "./format.js";

function nodeName(r) {
  return r.pod_name || r.agent_id;
}

function bytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return `${u ? v.toFixed(1) : v} ${units[u]}`;
}

function byNode(records) {
  const groups = new Map();
  for (const r of records) {
    const key = nodeName(r);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(r);
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b));
}

// A crash record's key in the panel: node and artifact directory.
function crashKey(node, artifact) {
  return `${node}\u0000${artifact}`;
}

function crashItem(r, open) {
  const p = r.panic_record ?? {};
  const crumbs = (p.breadcrumbs ?? []).map((b) =>
    h("li", {}, `${b.occurred_at} ${b.stage}${b.component ? ` (${b.component})` : ""}`));
  return h("details", { class: "crash", "data-artifact": r.artifact_dir,
    open: open.has(crashKey(nodeName(r), r.artifact_dir)) },
    h("summary", {},
      h("strong", {}, p.panic_value ?? "(no panic record)"),
      h("span", { class: "muted small" },
        ` ${p.component ?? ""} at ${p.occurred_at ?? r.fetched_at}${p.recovered ? " (recovered)" : ""}`)),
    h("p", { class: "small muted" }, `artifact ${r.artifact_dir}`),
    crumbs.length ? h("ol", { class: "breadcrumbs small" }, crumbs) : null,
    p.goroutine_stack ? h("pre", { class: "stack" }, p.goroutine_stack) : null);
}

function profileItem(r) {
  const links = (r.profiles ?? []).map((p) => {
    const href = ["pressure-profiles", r.pod_name, r.profile_id, p.type].map(encodeURIComponent).join("/");
    return h("a", { class: "profile-link", href, download: "" }, `${p.type} (${bytes(p.size_bytes)})`);
  });
  return h("li", { class: "profile", "data-profile": r.profile_id },
    h("span", {}, `${r.captured_at}: RSS ${bytes(r.rss_bytes)} of ${bytes(r.cgroup_limit_bytes)} `
      + `(trigger ${r.trigger_percent}%) `), ...links.flatMap((a, i) => (i ? [" ", a] : [a])));
}

/** Render into `el`. `crashes` and `profiles` are the bodies of the two endpoints, or null. */
export function renderDiagnostics(el, crashes, profiles) {
  // The records the operator opened stay open across refreshes.
  const open = new Set([...el.querySelectorAll("details.crash[open]")].map((d) =>
    crashKey(d.closest(".diag-node")?.dataset.node ?? "", d.dataset.artifact ?? "")));
  const crashPart = crashes === null
    ? h("p", { class: "muted" }, "Crash records unavailable (see the error above).")
    : crashes.length === 0
      ? h("p", { class: "muted", id: "no-crashes" }, "No crash records.")
      : byNode(crashes).map(([node, list]) => h("div", { class: "diag-node", "data-node": node },
        h("h3", {}, `${node} — ${list.length} crash record${list.length === 1 ? "" : "s"}`),
        list.map((r) => crashItem(r, open))));
  const profilePart = profiles === null
    ? h("p", { class: "muted" }, "Pressure profiles unavailable (see the error above).")
    : profiles.length === 0
      ? h("p", { class: "muted", id: "no-profiles" }, "No memory-pressure captures.")
      : byNode(profiles).map(([node, list]) => h("div", { class: "diag-node", "data-node": node },
        h("h3", {}, `${node} — ${list.length} capture${list.length === 1 ? "" : "s"}`),
        h("ul", { class: "profiles" }, list.map(profileItem))));
  el.replaceChildren(
    h("h3", { class: "diag-title" }, "Crash records"), h("div", { id: "crash-list" }, crashPart),
    h("h3", { class: "diag-title" }, "Memory-pressure profiles"), h("div", { id: "profile-list" }, profilePart));
}
