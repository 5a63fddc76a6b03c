// The topology panel: one column per role (liaison, then the data tiers from hot to cold), a
// card per node, SVG curves for the calls between them, and the selected node's details with
// the configuration keys on which it disagrees with its peers (GET /cluster, /cluster/config).

import { parseTime } from "./api.js";
import { ago, duration, h, localTime, s } from "./format.js";

const ROLE_ORDER = ["liaison", "ROLE_LIAISON", "datanode-hot", "datanode-warm", "datanode-cold",
  "datanode", "ROLE_DATA", "ROLE_META", "ROLE_UNSPECIFIED"];

function roleRank(role) {
  const i = ROLE_ORDER.indexOf(role);
  return i < 0 ? ROLE_ORDER.length : i;
}

const byRole = (a, b) => roleRank(a) - roleRank(b) || a.localeCompare(b);
const isOnline = (node) => node.status === "online";
const address = (a) => (a ? `${a.ip}:${a.port}` : "–");
/** Where a node is: its address (address agents) or its pod (pod agents). */
const place = (node) => (node.pod_name ? `pod ${node.pod_name}` : address(node.primary_address));

/** A runtime config tree as {"dotted.path": leaf}, the way /cluster/config compares it. */
function flatten(tree, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(tree ?? {})) {
    const path = prefix + key;
    const nested = value && typeof value === "object" && !Array.isArray(value);
    if (nested && Object.keys(value).length) flatten(value, `${path}.`, out);
    else out[path] = value;
  }
  return out;
}

const showValue = (v) => (v === null || v === undefined ? "(not set)"
  : typeof v === "string" ? v : JSON.stringify(v));

export class TopologyPanel {
  /**
   * @param {object} els  the panel's elements: graph, tiers, edges (svg), callList, detail
   * @param {(id: string|null) => void} onSelect  called when the operator picks a node
   */
  constructor(els, onSelect) {
    this.els = els;
    this.onSelect = onSelect;
    this.selected = null;
    this.data = null;
    new ResizeObserver(() => this.drawEdges()).observe(els.graph);
  }

  /** Show `cluster` (/cluster), `config` (/cluster/config, may be null) and `agents` (a Map
   *  agent_id -> {up, seconds} from the proxy's /status, may be empty). */
  update(cluster, config, agents) {
    this.data = { cluster, config, agents };
    this.renderTiers();
    this.renderCalls();
    this.renderDetail();
    this.drawEdges();
  }

  select(id) {
    this.selected = id;
    if (this.data) {
      this.renderTiers();
      this.renderDetail();
      this.drawEdges();
    }
  }

  /** {agent_id: [inconsistency, ...]} for the nodes that differ from a peer. */
  differences() {
    const out = new Map();
    for (const inc of this.data.config?.inconsistencies ?? []) {
      for (const v of inc.values) {
        for (const id of v.nodes) {
          if (!out.has(id)) out.set(id, []);
          out.get(id).push(inc);
        }
      }
    }
    return out;
  }

  renderTiers() {
    const { cluster, agents } = this.data;
    const diffs = this.differences();
    const roles = [...new Set(cluster.nodes.map((n) => n.node_role))].sort(byRole);
    if (!roles.length) {
      this.els.tiers.replaceChildren(h("p", { class: "muted" },
        "No agent is registered. Start one beside each BanyanDB node: ",
        h("code", {}, "python -m fodcproxy agent --help")));
      return;
    }
    const now = Date.now();
    this.els.tiers.replaceChildren(...roles.map((role) => {
      const nodes = cluster.nodes.filter((n) => n.node_role === role)
        .sort((a, b) => a.node_id.localeCompare(b.node_id));
      const online = nodes.filter(isOnline).length;
      return h("section", { class: "tier", dataset: { role }, "aria-label": `${role} nodes` },
        h("h3", {}, role, " ", h("span", { class: "count" }, `${online}/${nodes.length} online`)),
        h("ul", {}, nodes.map((n) => h("li", {}, this.card(n, agents.get(n.node_id),
          diffs.get(n.node_id) ?? [], now)))));
    }));
  }

  card(node, agent, diffs, now) {
    const online = isOnline(node);
    const missed = agent && !agent.up && online;
    const heartbeat = parseTime(node.last_heartbeat);
    const labels = Object.entries(node.labels ?? {});
    return h("button", {
      type: "button",
      class: `node ${online ? "online" : "offline"}${missed ? " missed" : ""}`,
      "aria-pressed": String(this.selected === node.node_id),
      dataset: { nodeId: node.node_id, status: node.status },
      onclick: () => this.onSelect(this.selected === node.node_id ? null : node.node_id),
    },
    h("span", { class: "node-head" },
      h("span", { class: `dot ${online ? "online" : "offline"}`, "aria-hidden": "true" }),
      h("span", { class: "node-id" }, node.node_id)),
    h("span", { class: "node-line" }, place(node), " · ",
      h("strong", { class: "state" }, online ? "online" : `offline (${node.status})`)),
    h("span", { class: "node-line muted", title: node.last_heartbeat },
      `heartbeat ${ago(heartbeat, now)}`,
      agent && agent.up && agent.seconds !== null ? ` · collect ${duration(agent.seconds)}` : ""),
    labels.length ? h("span", { class: "labels" },
      labels.map(([k, v]) => h("span", { class: "label" }, `${k}=${v}`))) : null,
    missed || diffs.length ? h("span", { class: "badges" },
      missed ? h("span", { class: "badge warn" }, "missed last collection") : null,
      diffs.length ? h("span", { class: "badge diff" },
        `${diffs.length} config difference${diffs.length > 1 ? "s" : ""}`) : null) : null);
  }

  renderCalls() {
    const { cluster } = this.data;
    const summary = this.els.callList.closest("details").querySelector("summary");
    summary.textContent = `Calls between nodes (${cluster.calls.length})`;
    this.els.callList.replaceChildren(...cluster.calls.map((c) =>
      h("li", {}, h("code", {}, c.source), " → ", h("code", {}, c.target), ` (${c.kind})`)));
  }

  /** Curves from the right edge of a caller's card to the left edge of the callee's. */
  drawEdges() {
    const { graph, edges } = this.els;
    if (!this.data) return;
    const box = graph.getBoundingClientRect();
    edges.setAttribute("width", graph.scrollWidth);
    edges.setAttribute("height", graph.scrollHeight);
    const rect = (id) => {
      const el = graph.querySelector(`[data-node-id="${CSS.escape(id)}"]`);
      if (!el) return null;
      const r = el.getBoundingClientRect();
      const x = r.left - box.left + graph.scrollLeft;
      const y = r.top - box.top + graph.scrollTop;
      return { left: x, right: x + r.width, mid: y + r.height / 2, center: x + r.width / 2 };
    };
    graph.classList.toggle("has-selection", this.selected !== null);
    const paths = [];
    for (const call of this.data.cluster.calls) {
      const a = rect(call.source);
      const b = rect(call.target);
      if (!a || !b) continue;
      let d;
      if (b.center > a.center) {
        const bend = Math.max(30, (b.left - a.right) / 2);
        d = `M${a.right},${a.mid} C${a.right + bend},${a.mid} ${b.left - bend},${b.mid} ${b.left},${b.mid}`;
      } else {
        // Same column (or an unusual role order): loop out on the right-hand side.
        d = `M${a.right},${a.mid} C${a.right + 40},${a.mid} ${b.right + 40},${b.mid} ${b.right},${b.mid}`;
      }
      const active = this.selected !== null
        && (call.source === this.selected || call.target === this.selected);
      paths.push(s("path", { d, class: `edge ${call.kind}${active ? " active" : ""}` },
        s("title", {}, `${call.source} → ${call.target} (${call.kind})`)));
    }
    edges.replaceChildren(...paths);
  }

  renderDetail() {
    const { detail } = this.els;
    if (this.selected === null) {
      detail.replaceChildren(h("p", { class: "muted" },
        "Select a node to see its configuration and where it differs from its peers."));
      return;
    }
    const node = this.data.cluster.nodes.find((n) => n.node_id === this.selected);
    if (!node) {
      detail.replaceChildren(h("p", { class: "muted" },
        `Node ${this.selected} is no longer registered.`));
      return;
    }
    const agent = this.data.agents.get(node.node_id);
    const secondary = Object.entries(node.secondary_addresses ?? {});
    const labels = Object.entries(node.labels ?? {});
    const fact = (term, ...value) => [h("dt", {}, term), h("dd", {}, ...value)];
    detail.replaceChildren(
      h("div", { class: "detail-head" },
        h("h3", {}, node.node_id),
        h("button", { type: "button", class: "link", onclick: () => this.onSelect(null) }, "Close")),
      h("dl", { class: "facts" },
        fact("Role", node.node_role),
        fact("Status", isOnline(node) ? "online" : `offline (${node.status})`),
        node.pod_name ? fact("Pod", node.pod_name) : fact("Address", address(node.primary_address)),
        node.pod_name && node.container_names?.length
          ? fact("Containers", node.container_names.join(", ")) : null,
        secondary.length ? fact("Other addresses",
          secondary.map(([k, a]) => `${k} ${address(a)}`).join(", ")) : null,
        fact("Labels", labels.length ? labels.map(([k, v]) => `${k}=${v}`).join(", ") : "none"),
        fact("Last heartbeat", `${localTime(parseTime(node.last_heartbeat))} (${ago(parseTime(node.last_heartbeat))})`),
        fact("Registered", localTime(parseTime(node.registered_at))),
        agent ? fact("Last collection", agent.up
          ? `answered in ${duration(agent.seconds ?? 0)}` : "did not answer in time") : null),
      ...this.configView(node).filter(Boolean));
  }

  configView(node) {
    const { config } = this.data;
    const title = h("h4", {}, "Configuration");
    if (!config) return [title, h("p", { class: "muted" }, "Configuration unavailable (see the error above).")];
    const own = config.configurations.find((c) => c.agent_id === node.node_id);
    if (!own) return [title, h("p", { class: "muted" }, "This node reported no configuration.")];

    const diffs = config.inconsistencies.filter((i) => i.role === node.node_role
      && i.values.some((v) => v.nodes.includes(node.node_id)));
    const differing = new Map(diffs.map((i) => [`${i.source} ${i.key}`, i]));
    const rows = [];
    for (const [source, values] of [["startup_params", own.startup_params],
      ["runtime_config", flatten(own.runtime_config)]]) {
      const keys = new Set(Object.keys(values ?? {}));
      for (const i of diffs) if (i.source === source) keys.add(i.key);  // set on peers only
      for (const key of keys) rows.push({ source, key, value: values?.[key], inc: differing.get(`${source} ${key}`) });
    }
    rows.sort((a, b) => Number(!a.inc) - Number(!b.inc) || a.source.localeCompare(b.source)
      || a.key.localeCompare(b.key));

    const peersOf = (inc) => inc.values.filter((v) => !v.nodes.includes(node.node_id))
      .map((v) => `${showValue(v.value)} on ${v.nodes.join(", ")}`).join("; ");
    const summary = diffs.length
      ? h("p", { class: "differs-summary" }, `${diffs.length} setting${diffs.length > 1 ? "s differ" : " differs"} from other ${node.node_role} nodes (highlighted).`)
      : h("p", { class: "muted" }, `Same as every other ${node.node_role} node that reports its configuration.`);
    return [title, summary,
      own.collected_at ? h("p", { class: "muted small" }, `Collected ${localTime(parseTime(own.collected_at))}.`) : null,
      rows.length ? h("div", { class: "table-wrap" }, h("table", { class: "config" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Setting"), h("th", { scope: "col" }, "Source"),
          h("th", { scope: "col" }, "Value"), h("th", { scope: "col" }, `Other ${node.node_role} nodes`))),
        h("tbody", {}, rows.map((r) => h("tr", { class: r.inc ? "differs" : "" },
          h("th", { scope: "row" }, h("code", {}, r.key)),
          h("td", {}, r.source === "startup_params" ? "startup" : "runtime"),
          h("td", {}, h("code", {}, showValue(r.value))),
          h("td", {}, r.inc ? peersOf(r.inc) : "–")))))) : h("p", { class: "muted" }, "The configuration is empty."),
      h("p", { class: "muted small" }, "Per-node settings (addresses, ports, node ids) are not compared.")];
  }
}
