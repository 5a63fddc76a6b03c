// The proxy panel: agents online/total (GET /health), and how the latest collection went, from
// GET /status (docs/console.md): its duration and answer count, the agents that missed the
// deadline, the slowest agents and the proxy's fan-out totals.

import { duration, h, round } from "./format.js";

/** What the console reads from one /status answer. */
export function summarizeStatus(status) {
  const agents = new Map();  // agent_id -> {up, seconds, role, error, lastAnswer}
  for (const a of status.agents ?? []) {
    agents.set(a.agent_id, {
      up: a.up === true,
      seconds: typeof a.collect_duration_seconds === "number" ? a.collect_duration_seconds : null,
      role: a.node_role,
      error: a.error ?? null,
      lastAnswer: a.last_answer_at ?? null,
    });
  }
  const c = status.collect ?? {};
  const p = status.proxy ?? {};
  const num = (v) => (typeof v === "number" ? v : null);
  return {
    collect: { asked: num(c.asked), answered: num(c.answered), seconds: num(c.duration_seconds) },
    agents,
    fanouts: num(p.collections),
    fanoutSeconds: num(p.collect_seconds),
    failures: num(p.agent_collect_failures),
  };
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
 * Render into `el`. `health` is /health's body or null, `metrics` a summarizeStatus() result
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
      "for this console's /status"));

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
