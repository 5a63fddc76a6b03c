// The proxy panel: agents online/total (GET /health), and how the console's latest /metrics
// collection went: its duration and answer count (the X-Fodc-* headers), the agents that
// missed the deadline (fodc_agent_up 0), the slowest agents and the proxy's fan-out totals.

import { duration, h, round } from "./format.js";

/** What the console reads from one /metrics answer. */
export function summarizeMetrics(collect, samples) {
  const agents = new Map();  // agent_id -> {up, seconds, role}
  let fanouts = null;
  let fanoutSeconds = null;
  let failures = null;
  for (const { name, labels, value } of samples) {
    const id = labels.agent_id;
    if (name === "fodc_agent_up" && id) {
      agents.set(id, { ...agents.get(id), up: value === 1, role: labels.node_role });
    } else if (name === "fodc_agent_collect_duration_seconds" && id) {
      agents.set(id, { ...agents.get(id), seconds: value });
    } else if (name === "fodc_proxy_collect_duration_seconds_count") fanouts = value;
    else if (name === "fodc_proxy_collect_duration_seconds_sum") fanoutSeconds = value;
    else if (name === "fodc_proxy_agent_collect_failures_total") failures = value;
  }
  for (const a of agents.values()) a.seconds ??= null;
  return { collect, agents, fanouts, fanoutSeconds, failures };
}

function stat(label, value, ...notes) {
  return h("div", { class: "stat" },
    h("span", { class: "stat-label" }, label),
    h("span", { class: "stat-value" }, value),
    notes.filter(Boolean).map((n) => h("span", { class: "stat-note" }, n)));
}

function unavailable(label) {
  return h("div", { class: "stat" }, h("span", { class: "stat-label" }, label),
    h("span", { class: "stat-value muted" }, "–"), h("span", { class: "stat-note" }, "unavailable"));
}

/**
 * Render into `el`. `health` is /health's body or null, `metrics` a summarizeMetrics() result
 * or null, `statusOf` a Map agent_id -> registry status from /cluster (to tell "offline" from
 * "too slow").
 */
export function renderProxy(el, health, metrics, statusOf) {
  const tiles = [];
  if (health) {
    const offline = health.agents_total - health.agents_online;
    tiles.push(stat("Agents online", h("span", { id: "proxy-online" }, `${health.agents_online} / ${health.agents_total}`),
      offline ? `${offline} offline` : "all online"));
  } else tiles.push(unavailable("Agents online"));

  if (metrics) {
    const { collect, agents } = metrics;
    tiles.push(stat("Last collection",
      collect.seconds === null ? "–" : duration(collect.seconds),
      collect.asked === null ? null : `${collect.answered} of ${collect.asked} agents answered`,
      "for this console's /metrics"));

    const missed = [...agents].filter(([, a]) => !a.up).map(([id]) => id).sort();
    tiles.push(h("div", { class: `stat${missed.length ? " warn" : ""}`, id: "proxy-missed" },
      h("span", { class: "stat-label" }, "Missed the last deadline"),
      missed.length
        ? h("ul", { class: "stat-list" }, missed.map((id) => h("li", { dataset: { agentId: id } },
          h("code", {}, id), " ",
          h("span", { class: "muted" }, statusOf.get(id) === "online" || !statusOf.has(id)
            ? "(too slow)" : "(offline)"))))
        : h("span", { class: "stat-value" }, "none")));

    const slowest = [...agents].filter(([, a]) => a.up && a.seconds !== null)
      .sort((x, y) => y[1].seconds - x[1].seconds).slice(0, 3);
    tiles.push(h("div", { class: "stat" }, h("span", { class: "stat-label" }, "Slowest agents"),
      slowest.length
        ? h("ul", { class: "stat-list" }, slowest.map(([id, a]) =>
          h("li", {}, h("code", {}, id), " ", h("span", {}, duration(a.seconds)))))
        : h("span", { class: "stat-value muted" }, "–")));

    if (metrics.fanouts !== null) {
      const mean = metrics.fanouts ? metrics.fanoutSeconds / metrics.fanouts : null;
      tiles.push(stat("Fan-outs since start", round(metrics.fanouts),
        mean === null ? null : `mean ${duration(mean)}`,
        metrics.failures === null ? null : `${round(metrics.failures)} agent answers missed`));
    }
  } else tiles.push(unavailable("Last collection"));

  if (health) {
    tiles.push(stat("Uptime", duration(health.uptime_seconds), `status ${health.status}`));
  }
  el.replaceChildren(...tiles);
}
