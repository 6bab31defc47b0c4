// The dashboard's pages. Each has load(ctx) -> data (API calls only) and render(data, ctx) ->
// nodes; app.js polls load() and re-renders. Per-node utilisation history and the queue-length
// trend are kept here, in memory, from the polls (they reset when the page is reloaded).

import { api } from "./api.js";
import { bar, lineChart, PALETTE, sparkline, stackedBar, swatch } from "./charts.js";
import { badge, confirmAction, flag, fmt, h, notify, seconds, table, timeEl } from "./ui.js";

const JOB_STATES = ["QUEUED", "PLACED", "STARTING", "RUNNING", "PREEMPTED", "SUCCEEDED",
  "FAILED", "CANCELLED"];
const ACTIVE = new Set(["PLACED", "STARTING", "RUNNING"]);
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
const HISTORY = 60; // samples kept per node
const QUEUE_HISTORY = 240;
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g; // terminal colours in job output

// -- shared state ----------------------------------------------------------

export const history = { nodes: new Map(), queue: [] };

/** Remember each node's CPU utilisation once per heartbeat (for the sparklines). */
function recordNodes(nodes) {
  for (const node of nodes) {
    const cpu = node.utilization?.cpu_percent;
    if (typeof cpu !== "number" || !node.last_heartbeat_at) continue;
    const samples = history.nodes.get(node.id) || [];
    if (samples.at(-1)?.at !== node.last_heartbeat_at) {
      samples.push({ at: node.last_heartbeat_at, cpu });
      if (samples.length > HISTORY) samples.shift();
      history.nodes.set(node.id, samples);
    }
  }
}

function utilCell(node) {
  const samples = history.nodes.get(node.id) || [];
  const now = node.utilization?.cpu_percent;
  const cpus = samples.map((s) => s.cpu);
  let label = typeof now === "number" ? `CPU ${fmt.num(now)} % now` : "no utilisation reported";
  if (cpus.length > 1) {
    label += `; ${cpus.length} heartbeats from ${fmt.num(Math.min(...cpus))} to ${fmt.num(Math.max(...cpus))} %`;
  }
  return h("span", { class: "util" }, sparkline(samples.map((s) => s.cpu), { label }),
    h("span", { class: "num" }, typeof now === "number" ? `${fmt.num(now)} %` : "—"));
}

export function canCancel(job, me) {
  if (!me || me.kind !== "user" || TERMINAL.has(job.state)) return false;
  if (!me.is_admin && !me.scopes.includes("jobs:write")) return false;
  return me.is_admin || job.owner === me.subject || me.projects[job.project] === "project-admin";
}

async function cancelJob(job, refresh) {
  const answer = await confirmAction({
    title: `Cancel job ${job.name}?`,
    message: `${job.id} is ${job.state}. Its workers are stopped and its resources released.`,
    confirmLabel: "Cancel job",
  });
  if (!answer) return;
  try {
    const after = await api(`/jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST",
      body: { reason: answer.reason } });
    notify(`Job ${job.name} is ${after.state}.`, "ok");
  } catch (err) {
    notify(`Cancel refused: ${err.message}`, "error");
  }
  await refresh();
}

function cancelButton(job, ctx) {
  if (!canCancel(job, ctx.me)) return null;
  return h("button", { type: "button", class: "danger small", dataset: { key: `cancel:${job.id}` },
    "aria-label": `Cancel job ${job.name}`, onclick: () => cancelJob(job, ctx.refresh) }, "Cancel");
}

export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id }, title), children);
}

function card(title, value, ...details) {
  return h("div", { class: "card" }, h("h3", {}, title), h("p", { class: "big" }, value), details);
}

function localMidnight() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d;
}

function median(values) {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// -- Pool -----------------------------------------------------------------

const pool = {
  title: "Pool",
  async load() {
    const [summary, usage, recent] = await Promise.all([
      api("/pool/summary"),
      api("/pool/usage", { query: { since: localMidnight().toISOString() } }),
      api("/jobs", { query: { limit: 200 } }),
    ]);
    history.queue.push([Date.now(), summary.jobs_by_state.QUEUED || 0]);
    if (history.queue.length > QUEUE_HISTORY) history.queue.shift();
    return { summary, usage, jobs: recent.items };
  },
  render({ summary, usage, jobs }) {
    const n = summary.nodes_by_state, j = summary.jobs_by_state, e = summary.energy;
    const present = (n.ONLINE || 0) + (n.DRAINING || 0) + (n.CORDONED || 0);
    const running = [...ACTIVE].reduce((sum, s) => sum + (j[s] || 0), 0);
    const waits = jobs.filter((x) => x.placed_at)
      .map((x) => [Date.parse(x.submitted_at), seconds(x.submitted_at, x.placed_at)])
      .sort((a, b) => a[0] - b[0]);
    const queued = jobs.filter((x) => x.state === "QUEUED")
      .sort((a, b) => Date.parse(a.submitted_at) - Date.parse(b.submitted_at));
    const nodeStates = ["ONLINE", "DRAINING", "CORDONED", "LOST", "OFFLINE", "ENROLLED", "REVOKED"]
      .filter((s) => n[s]);
    const totalJ = e.total_j || 0;
    const split = [["busy (jobs)", e.busy_j, e.busy_co2e_g, PALETTE[0]],
      ["idle", e.idle_j, e.idle_co2e_g, PALETTE[4]], ["other", e.other_j, e.other_co2e_g, PALETTE[3]]];
    const cards = h("div", { class: "cards" },
      card("Nodes online", `${n.ONLINE || 0}`, h("ul", { class: "states" },
        nodeStates.map((s) => h("li", {}, badge(s), " ", h("span", { class: "num" }, n[s])))),
      h("p", { class: "muted" }, `${present} present, ${n.LOST || 0} lost`)),
      card("CPUs", `${fmt.num(summary.used.cpus)} / ${fmt.num(summary.total.cpus)} used`,
        h("p", {}, `${fmt.num(summary.free.cpus)} free on online nodes`)),
      card("GPUs", `${summary.used.gpus} / ${summary.total.gpus} used`,
        h("p", {}, `${summary.free.gpus} free on online nodes`)),
      card("Jobs", `${running} running`, h("p", {}, `${j.QUEUED || 0} queued, `,
        `${j.SUCCEEDED || 0} succeeded, ${j.FAILED || 0} failed, ${j.CANCELLED || 0} cancelled`)),
      card("Pool power now", fmt.power(usage.power_w),
        usage.power_nodes === 0 ? h("p", { class: "muted" }, "no node has reported power yet")
          : h("p", {}, `from ${usage.power_nodes} node${usage.power_nodes === 1 ? "" : "s"} `,
            usage.power_estimated ? flag("estimated", "estimated",
              "from utilisation: no power counter on these nodes") : flag("measured", "measured"))),
      carbonSavedCard(summary.carbon_saved),
      card("Energy today (jobs)", fmt.energy(usage.jobs_energy_j),
        h("p", {}, fmt.carbon(usage.jobs_co2e_g), " since ", timeEl(usage.since)),
        h("p", { class: "muted" }, "Idle energy is kept as lifetime totals only.")),
      h("div", { class: "card wide" }, h("h3", {}, "Energy, busy vs idle (lifetime)"),
        h("p", { class: "big" }, fmt.energy(totalJ)),
        stackedBar(split.map(([name, joules, , color]) => ({ value: joules, color,
          label: `${name} ${fmt.energy(joules)}` })), { label: split.map(([name, joules]) =>
          `${name} ${fmt.pct(totalJ ? joules / totalJ : 0)}`).join(", ") }),
        h("dl", { class: "pairs", id: "busy-idle" }, split.map(([name, joules, grams, color]) => [
          h("dt", {}, swatch(color), ` ${name}`),
          h("dd", {}, `${fmt.energy(joules)} · ${fmt.pct(totalJ ? joules / totalJ : 0)} · ${fmt.carbon(grams)}`)])),
        e.estimated_percent > 0
          ? flag(`${fmt.num(e.estimated_percent)} % estimated`, "estimated") : null),
    );
    const byType = table({
      id: "capacity", caption: "CPUs and GPUs by type (free counts online nodes only)",
      rowKey: (r) => `${r.kind}:${r.type}`,
      rows: usage.by_type,
      columns: [
        { key: "type", label: "Resource", rowHeader: true,
          cell: (r) => (r.kind === "cpu" ? "CPU cores" : `GPU ${r.type}`) },
        { key: "total", label: "Total", className: "num", cell: (r) => fmt.num(r.total) },
        { key: "used", label: "Used", className: "num", cell: (r) => fmt.num(r.used) },
        { key: "free", label: "Free", className: "num", cell: (r) => fmt.num(r.free) },
        { key: "bar", label: "In use", cell: (r) => h("span", { class: "util" },
          bar(r.total ? r.used / r.total : 0, { label: `${fmt.pct(r.total ? r.used / r.total : 0)} in use` }),
          h("span", { class: "num" }, fmt.pct(r.total ? r.used / r.total : 0))) },
      ],
      empty: "No node is present.",
    });
    const oldest = queued[0];
    const queue = section("Queue",
      h("p", {}, `${j.QUEUED || 0} job${j.QUEUED === 1 ? "" : "s"} waiting`,
        oldest ? [". Oldest: ", h("a", { href: `#/jobs/${oldest.id}` }, oldest.name),
          `, waiting ${fmt.duration(seconds(oldest.submitted_at))}`,
          oldest.pending_reason ? ` (${oldest.pending_reason})` : ""] : "",
        waits.length ? `. Median wait of the last ${Math.min(20, waits.length)} placed jobs: `
          + `${fmt.duration(median(waits.slice(-20).map((w) => w[1])))}.` : "."),
      h("div", { class: "charts" },
        lineChart({ title: "Queue length (this session)", time: true, zeroBased: true,
          series: [{ name: "queued jobs", points: history.queue }], xLabel: "time",
          yLabel: "jobs", id: "chart-queue" }),
        lineChart({ title: "Wait before placement (recent jobs)", time: true, zeroBased: true,
          series: [{ name: "wait", points: waits }], xLabel: "submitted at", yLabel: "seconds",
          yFormat: (v) => fmt.sig(v), id: "chart-wait" })));
    return [h("h1", {}, "Pool"), cards, section("Capacity", byType), queue];
  },
};

// -- Nodes ----------------------------------------------------------------

const nodeView = { sort: { key: "name", dir: "asc" } };

async function nodeAction(node, action, refresh) {
  const words = {
    drain: ["Drain", "takes no new work; its running jobs finish"],
    cordon: ["Cordon", "takes no new work and is held by an admin"],
    uncordon: ["Uncordon", "goes back to ONLINE and takes work again"],
  }[action];
  const answer = await confirmAction({ title: `${words[0]} node ${node.name}?`,
    message: `${node.name} (${node.id}) ${words[1]}.`, confirmLabel: words[0],
    danger: action !== "uncordon" });
  if (!answer) return;
  try {
    const body = action === "uncordon" ? undefined : { reason: answer.reason };
    const after = await api(`/nodes/${encodeURIComponent(node.id)}/${action}`, { method: "POST", body });
    notify(`Node ${node.name} is ${after.state}.`, "ok");
  } catch (err) {
    notify(`${words[0]} refused: ${err.message}`, "error");
  }
  await refresh();
}

function nodeButtons(node, ctx) {
  const can = {
    drain: ["ONLINE", "CORDONED"].includes(node.state),
    cordon: ["ONLINE", "DRAINING"].includes(node.state),
    uncordon: ["DRAINING", "CORDONED"].includes(node.state),
  };
  return h("span", { class: "buttons" }, Object.entries(can).filter(([, ok]) => ok).map(([action]) =>
    h("button", { type: "button", class: `small ${action === "uncordon" ? "" : "warn"}`,
      dataset: { key: `${action}:${node.id}`, action }, "aria-label": `${action} ${node.name}`,
      onclick: () => nodeAction(node, action, ctx.refresh) },
    action[0].toUpperCase() + action.slice(1))));
}

const nodes = {
  title: "Nodes",
  async load() {
    const [list, usage] = await Promise.all([api("/nodes"), api("/pool/usage")]);
    recordNodes(list);
    return { list, usage: new Map(usage.nodes.map((u) => [u.node_id, u])) };
  },
  render({ list, usage }, ctx) {
    const admin = ctx.me.is_admin;
    const used = (n) => usage.get(n.id) || {};
    const columns = [
      { key: "name", label: "Node", rowHeader: true, sort: (n) => n.name,
        cell: (n) => h("span", { class: "ident" }, h("strong", {}, n.name), h("code", {}, n.id),
          n.region ? h("span", { class: "muted" }, `region ${n.region}`) : "") },
      { key: "state", label: "State", sort: (n) => n.state, cell: (n) => badge(n.state) },
      { key: "donor", label: "Donor", sort: (n) => n.donor_project || "", cell: (n) => n.donor_project || "—" },
      { key: "gpu", label: "GPU type", sort: (n) => n.gpu_type || "",
        cell: (n) => (n.gpus ? `${n.gpus} × ${n.gpu_type || n.gpu_model || "untyped"}` : "none") },
      { key: "cpus", label: "CPUs used", className: "num", sort: (n) => used(n).cpus_used || 0,
        cell: (n) => `${fmt.num(used(n).cpus_used || 0)} / ${fmt.num(n.cpus)}` },
      { key: "gpus", label: "GPUs used", className: "num", sort: (n) => used(n).gpus_used || 0,
        cell: (n) => `${used(n).gpus_used || 0} / ${n.gpus}` },
      { key: "util", label: "CPU utilisation", sort: (n) => n.utilization?.cpu_percent ?? -1,
        cell: utilCell },
      { key: "power", label: "Power", className: "num", sort: (n) => used(n).power_w ?? -1,
        cell: (n) => (used(n).power_fresh
          ? [fmt.power(used(n).power_w), used(n).is_estimated ? [" ", flag("est.", "estimated",
            "estimated from utilisation")] : ""]
          : "—") },
      { key: "lease", label: "Lease", sort: (n) => n.last_heartbeat_at || "",
        cell: (n) => h("span", { class: "lease" },
          h("span", {}, n.last_heartbeat_at
            ? ["heartbeat ", timeEl(n.last_heartbeat_at, fmt.ago(n.last_heartbeat_at))] : "no heartbeat"),
          n.lease_expires_at ? h("span", { class: "muted" }, Date.parse(n.lease_expires_at) > Date.now()
            ? `expires in ${fmt.duration((Date.parse(n.lease_expires_at) - Date.now()) / 1000)}`
            : "lease expired") : "") },
    ];
    if (admin) columns.push({ key: "actions", label: "Actions", cell: (n) => nodeButtons(n, ctx) });
    const counts = list.reduce((m, n) => m.set(n.state, (m.get(n.state) || 0) + 1), new Map());
    return [
      h("h1", {}, "Nodes"),
      h("p", {}, `${list.length} node${list.length === 1 ? "" : "s"}: `,
        [...counts].map(([s, c], i) => [i ? ", " : "", `${c} ${s.toLowerCase()}`]), ".",
        admin ? "" : " Drain and cordon are for pool admins."),
      table({ id: "nodes", caption: "Nodes of the pool", columns, rows: list, rowKey: (n) => n.id,
        sort: nodeView.sort, onSort: (s) => { nodeView.sort = s; ctx.rerender(); },
        empty: "No node has enrolled yet." }),
      h("p", { class: "muted" }, "Utilisation sparklines show this session's heartbeats (up to ",
        `${HISTORY}); they start empty when the page loads.`),
    ];
  },
};

// -- Jobs -----------------------------------------------------------------

const jobView = { filters: { state: "", project: "", owner: "", q: "" },
  sort: { key: "submitted", dir: "desc" } };

/** The filter form, built once per visit and kept across refreshes (so typing is not lost). */
function filterForm(ctx) {
  const f = jobView.filters;
  const apply = () => {
    const query = new URLSearchParams(Object.entries(f).filter(([, v]) => v)).toString();
    replaceHash(`#/jobs${query ? `?${query}` : ""}`);
  };
  const update = (key) => (event) => {
    f[key] = event.target.value.trim();
    apply();
    ctx.refresh();
  };
  const field = (id, text, control) => h("div", { class: "field" },
    h("label", { for: id }, text), control);
  const projects = Object.keys(ctx.me.projects || {}).sort();
  return h("form", { class: "filters", role: "search", "aria-label": "Filter jobs",
    onsubmit: (e) => e.preventDefault() },
  field("f-state", "State", h("select", { id: "f-state", onchange: update("state") },
    h("option", { value: "" }, "all"),
    JOB_STATES.map((s) => h("option", { value: s, selected: f.state === s }, s)))),
  field("f-project", "Project", ctx.me.is_admin
    ? h("input", { id: "f-project", type: "text", value: f.project, placeholder: "any",
      onchange: update("project") })
    : h("select", { id: "f-project", onchange: update("project") },
      h("option", { value: "" }, "all of mine"),
      projects.map((p) => h("option", { value: p, selected: f.project === p }, p)))),
  field("f-owner", "Owner", h("input", { id: "f-owner", type: "text", value: f.owner,
    placeholder: "any", onchange: update("owner") })),
  field("f-name", "Name", h("input", { id: "f-name", type: "search", value: f.q,
    placeholder: "contains…", oninput: (e) => { f.q = e.target.value; apply(); ctx.rerender(); } })));
}

function replaceHash(hash) {
  window.history.replaceState(null, "", hash);
}

function workersText(x) {
  return x.workers_min === x.workers_max ? `${x.workers_max}` : `${x.workers_min}–${x.workers_max}`;
}

function perWorkerText(x) {
  const gpus = x.gpus_per_worker
    ? `, ${x.gpus_per_worker} GPU${x.gpu_type ? ` (${x.gpu_type})` : ""}` : "";
  return `${fmt.num(x.cpus_per_worker)} CPU${gpus}, ${fmt.bytes(x.memory_bytes_per_worker)}`;
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function waited(job) {
  return seconds(job.submitted_at, job.placed_at);
}

function ran(job) {
  return job.started_at ? seconds(job.started_at, job.ended_at) : null;
}

const jobs = {
  title: "Jobs",
  enter(params) {
    for (const key of Object.keys(jobView.filters)) jobView.filters[key] = params.get(key) || "";
    jobView.form = null;
  },
  async load() {
    const f = jobView.filters;
    const page = await api("/jobs", { query: { limit: 200, state: f.state, project: f.project,
      owner: f.owner } });
    return { items: page.items, more: Boolean(page.next_cursor) };
  },
  render({ items, more }, ctx) {
    const q = jobView.filters.q.toLowerCase();
    const rows = q ? items.filter((x) => `${x.name} ${x.id}`.toLowerCase().includes(q)) : items;
    const columns = [
      { key: "name", label: "Job", rowHeader: true, sort: (x) => x.name,
        cell: (x) => h("span", { class: "ident" }, h("a", { href: `#/jobs/${x.id}`,
          dataset: { key: `open:${x.id}` } }, x.name), h("code", {}, x.id)) },
      { key: "state", label: "State", sort: (x) => JOB_STATES.indexOf(x.state), cell: (x) => badge(x.state) },
      { key: "project", label: "Project", sort: (x) => x.project, cell: (x) => x.project },
      { key: "owner", label: "Owner", sort: (x) => x.owner, cell: (x) => x.owner },
      { key: "workers", label: "Workers", className: "num", sort: (x) => x.workers_max,
        cell: workersText },
      { key: "submitted", label: "Submitted", sort: (x) => x.submitted_at,
        cell: (x) => timeEl(x.submitted_at, fmt.ago(x.submitted_at)) },
      { key: "waited", label: "Waited", className: "num", sort: (x) => waited(x) ?? 0,
        cell: (x) => fmt.duration(waited(x)) },
      { key: "ran", label: "Ran", className: "num", sort: (x) => ran(x) ?? -1, cell: (x) => fmt.duration(ran(x)) },
      { key: "why", label: "Why pending / how it ended", className: "why",
        cell: (x) => x.pending_reason || x.exit_reason || "" },
      { key: "actions", label: "Actions", cell: (x) => cancelButton(x, ctx) },
    ];
    return [
      h("h1", {}, "Jobs"),
      (jobView.form ||= filterForm(ctx)),
      h("p", { id: "jobs-count" }, `${rows.length} job${rows.length === 1 ? "" : "s"}`,
        more ? " (the newest 200; narrow the filters to see others)" : ""),
      table({ id: "jobs", caption: "Jobs, newest first", columns, rows, rowKey: (x) => x.id,
        sort: jobView.sort, onSort: (s) => { jobView.sort = s; ctx.rerender(); },
        empty: "No job matches." }),
    ];
  },
};

// -- Job detail -------------------------------------------------------------

const metricCache = { jobId: null, after: 0, items: [] };

async function allMetrics(jobId) {
  if (metricCache.jobId !== jobId) Object.assign(metricCache, { jobId, after: 0, items: [] });
  for (;;) {
    const batch = await api(`/jobs/${encodeURIComponent(jobId)}/metrics`,
      { query: { after: metricCache.after, limit: 1000 } });
    metricCache.items.push(...batch);
    if (batch.length) metricCache.after = batch.at(-1).id;
    if (batch.length < 1000) return metricCache.items;
  }
}

/** One series per attempt of `key` over steps (the last report of a step wins). */
function metricSeries(metrics, key) {
  const byAttempt = new Map();
  for (const m of metrics) {
    if (typeof m.values[key] !== "number") continue;
    const steps = byAttempt.get(m.attempt) || new Map();
    steps.set(m.step, m.values[key]);
    byAttempt.set(m.attempt, steps);
  }
  return [...byAttempt].map(([attempt, steps]) => ({
    name: byAttempt.size > 1 ? `${key}, attempt ${attempt}` : key,
    points: [...steps].sort((a, b) => a[0] - b[0]),
  }));
}

const job = {
  title: "Job",
  async load(ctx) {
    const id = encodeURIComponent(ctx.route.id);
    const [detail, events, allocations, energy, logs, nodeList] = await Promise.all([
      api(`/jobs/${id}`), api(`/jobs/${id}/events`), api(`/jobs/${id}/allocations`),
      api(`/jobs/${id}/energy`), api(`/jobs/${id}/logs`, { query: { tail: 100 } }), api("/nodes"),
    ]);
    recordNodes(nodeList);
    const metrics = await allMetrics(ctx.route.id);
    return { detail, events, allocations, energy, logs, nodes: new Map(nodeList.map((n) => [n.id, n])),
      metrics };
  },
  render({ detail: x, events, allocations, energy, logs, nodes: nodeMap, metrics }, ctx) {
    document.title = `${x.name} · commonpool`;
    const facts = [
      ["Job id", h("code", {}, x.id)], ["Project", x.project], ["Owner", x.owner],
      x.kind === "command" ? ["Command", h("code", {}, (x.command || []).join(" "))]
        : x.kind === "service" ? ["Serves", h("a", { href: "#/services" }, "a model (Services)")]
          : ["Entrypoint", h("code", {}, x.entrypoint)],
      ...(x.array_id ? [["Array task", h("code", {}, `${x.array_id}[${x.array_index}]`)]] : []),
      ["Workers", `${workersText(x)} × ${perWorkerText(x)}`],
      ["Attempt", `${x.attempt} of ${x.max_attempts}`], ["Framework", x.framework],
      ["Submitted", timeEl(x.submitted_at)], ["Waited", fmt.duration(waited(x))],
      ["Started", timeEl(x.started_at)], ["Ended", timeEl(x.ended_at)],
      ["Ran", fmt.duration(ran(x))],
    ];
    const header = h("div", { class: "title-row" },
      h("h1", {}, x.name, " ", badge(x.state)), cancelButton(x, ctx));
    const reason = x.pending_reason
      ? h("p", { class: "callout", id: "pending-reason" }, h("strong", {}, "Why pending: "), x.pending_reason)
      : x.exit_reason ? h("p", { class: "callout", id: "exit-reason" }, h("strong", {}, "How it ended: "), x.exit_reason)
        : null;
    const curves = h("div", { class: "charts" },
      lineChart({ id: "chart-loss", title: "Training loss", series: metricSeries(metrics, "loss"),
        xLabel: "step", yLabel: "loss" }),
      lineChart({ id: "chart-throughput", title: "Throughput", zeroBased: true,
        series: metricSeries(metrics, "samples_per_s"), xLabel: "step", yLabel: "samples/s" }));
    const accuracy = metricSeries(metrics, "accuracy");
    if (accuracy.length) {
      curves.append(lineChart({ id: "chart-accuracy", title: "Accuracy", series: accuracy,
        xLabel: "step", yLabel: "accuracy" }));
    }
    return [
      h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " › ", x.name),
      header, reason,
      h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      section("Training curves", curves),
      energySection(energy),
      section("Workers and nodes", workerTable(x, allocations, energy, nodeMap)),
      section("Events", timeline(events)),
      section("Logs (last 100 lines)", logTail(logs)),
    ];
  },
};

function carbonSavedCard(saved) {
  if (!saved || !saved.jobs) {
    return card("Carbon saved", "—", h("p", { class: "muted", id: "carbon-saved" },
      "No ended job has waited for cleaner power yet (carbon: aware jobs with a deadline)."));
  }
  return card("Carbon saved", fmt.carbon(saved.saved_g),
    h("p", { id: "carbon-saved" }, saved.saved_percent === null ? "" : `${fmt.num(saved.saved_percent)} % less, `,
      `${saved.jobs} job${saved.jobs === 1 ? "" : "s"} waited for cleaner power`),
    h("p", { class: "muted" }, `${fmt.carbon(saved.co2e_g)} emitted vs ${fmt.carbon(saved.baseline_co2e_g)} `,
      "had they started when first deferred"));
}

function energySection(e) {
  const estimated = e.is_estimated
    ? flag(`estimated (${fmt.num(e.estimated_percent)} %)`, "estimated", e.method_summary)
    : e.nodes.length ? flag("measured", "measured") : null;
  const cards = h("div", { class: "cards", id: "energy" },
    card("Energy", fmt.energy(e.energy_j), h("p", {}, `${fmt.sig(e.energy_j)} J `, estimated)),
    card("Carbon", fmt.carbon(e.co2e_g),
      h("p", {}, e.g_per_kwh ? `${fmt.sig(e.g_per_kwh)} g CO₂e/kWh` : "no intensity yet",
        e.intensity_fallback ? [" ", flag("fallback intensity", "estimated",
          "a yearly or world average stood in for the grid's figure")] : "")),
    e.co2e_saved_g === null ? null : card("Carbon saved by waiting", fmt.carbon(e.co2e_saved_g),
      h("p", {}, `vs ${fmt.carbon(e.baseline_co2e_g)} at ${fmt.sig(e.baseline_g_per_kwh)} g CO₂e/kWh `,
        "when the carbon policy deferred it")),
    card("Energy per sample", e.j_per_sample ? `${fmt.sig(e.j_per_sample)} J` : "—",
      h("p", { class: "muted" }, e.samples_basis || "the job reports no samples")),
  );
  const method = h("dl", { class: "pairs", id: "energy-method" },
    h("dt", {}, "Method"), h("dd", {}, e.method_summary),
    h("dt", {}, "Devices"), h("dd", {}, e.methods.join(", ") || "—"),
    h("dt", {}, "Grid intensity"), h("dd", {}, e.intensity_sources.join(", ") || "—"),
    h("dt", {}, "Metered"), h("dd", {}, e.first_at ? [timeEl(e.first_at), " – ", timeEl(e.last_at)] : "—"));
  const series = lineChart({ id: "chart-energy", title: "Energy per minute (all nodes)", time: true,
    zeroBased: true, series: [{ name: "Wh", points: e.series.map((p) => [Date.parse(p.at), p.energy_j / 3600]) }],
    xLabel: "time", yLabel: "Wh" });
  return section("Energy and carbon", cards, h("div", { class: "charts" }, method, series));
}

function workerTable(x, allocations, energy, nodeMap) {
  const parts = new Map(energy.nodes.map((p) => [p.node_id, p]));
  const byNode = new Map();
  for (const a of allocations) {
    const row = byNode.get(a.node_id) || { node_id: a.node_id, ranks: [], cpus: 0, gpus: 0, active: false };
    if (a.attempt === x.attempt) {
      row.ranks.push(a.rank);
      row.cpus += a.cpus;
      row.gpus += a.gpus;
    }
    row.active ||= a.released_at === null;
    byNode.set(a.node_id, row);
  }
  for (const p of energy.nodes) {
    if (!byNode.has(p.node_id)) byNode.set(p.node_id, { node_id: p.node_id, ranks: [], cpus: 0, gpus: 0, active: false });
  }
  const name = (r) => nodeMap.get(r.node_id)?.name || parts.get(r.node_id)?.node_name || r.node_id;
  return table({ id: "job-nodes", caption: "Ranks, node utilisation and energy per node",
    rowKey: (r) => r.node_id, rows: [...byNode.values()],
    columns: [
      { key: "node", label: "Node", rowHeader: true, cell: (r) => h("span", { class: "ident" },
        h("strong", {}, name(r)), h("code", {}, r.node_id)) },
      { key: "ranks", label: `Ranks (attempt ${x.attempt})`, cell: (r) => r.ranks.sort().join(", ") || "—" },
      { key: "held", label: "Holds now",
        cell: (r) => (r.active ? `${fmt.num(r.cpus)} CPU${r.gpus ? `, ${r.gpus} GPU` : ""}` : "released") },
      { key: "util", label: "Node CPU utilisation",
        cell: (r) => (nodeMap.has(r.node_id) ? utilCell(nodeMap.get(r.node_id)) : "—") },
      { key: "energy", label: "Energy", className: "num", cell: (r) => fmt.energy(parts.get(r.node_id)?.energy_j) },
      { key: "carbon", label: "Carbon", className: "num", cell: (r) => fmt.carbon(parts.get(r.node_id)?.co2e_g) },
      { key: "method", label: "Method", cell: (r) => {
        const p = parts.get(r.node_id);
        if (!p) return "—";
        return [Object.entries(p.methods).map(([d, m]) => `${d}=${m}`).join(", "), " ",
          p.is_estimated ? flag("estimated", "estimated", p.method_note || "") : flag("measured", "measured")];
      } },
    ],
    empty: "Not placed yet." });
}

function timeline(events) {
  if (events.length === 0) return h("p", { class: "empty" }, "No event yet.");
  return h("ol", { class: "timeline", id: "events" }, events.map((e) => h("li", {},
    timeEl(e.created_at), " ", badge(e.to_state),
    h("span", { class: "muted" }, e.from_state ? ` from ${e.from_state}` : " submitted", ` by ${e.actor}`),
    e.reason ? h("span", { class: "reason" }, ` — ${e.reason}`) : "")));
}

function logTail(lines) {
  if (lines.length === 0) return h("p", { class: "empty" }, "No output yet.");
  return h("pre", { class: "logs", id: "logs", tabindex: "0", "aria-label": "Last lines of the job's output" },
    lines.map((l) => h("span", { class: `line ${l.stream}` }, l.stream === "stdout" ? "" : `[${l.stream}] `,
      l.line.replace(ANSI, ""), "\n")));
}

// -- Fairness ---------------------------------------------------------------

const fairView = { sort: { key: "project", dir: "asc" } };

const fairness = {
  title: "Fairness",
  async load() {
    return api("/pool/fairness");
  },
  render(data, ctx) {
    const shareCell = (value, color, what) => h("span", { class: "util" },
      bar(value, { color, label: `${what} ${fmt.pct(value)}` }), h("span", { class: "num" }, fmt.pct(value)));
    const c = data.capacity;
    return [
      h("h1", {}, "Fairness"),
      h("p", {}, `Shares are of the pool's capacity (${fmt.num(c.cpus)} CPUs, ${c.gpus} GPUs, `,
        `${fmt.bytes(c.memory_bytes)}), by dominant resource. The entitled share is the fair `,
        "policy's weighted water-fill over the projects that run or queue work now."),
      table({ id: "fairness", caption: "Share vs usage per project, and donor credits",
        rowKey: (p) => p.project, rows: data.projects, sort: fairView.sort,
        onSort: (s) => { fairView.sort = s; ctx.rerender(); },
        columns: [
          { key: "project", label: "Project", rowHeader: true, sort: (p) => p.project, cell: (p) => p.project },
          { key: "weight", label: "Weight", className: "num", sort: (p) => p.weight,
            cell: (p) => `${fmt.num(p.weight)} (${fmt.pct(p.weight_share)})` },
          { key: "entitled", label: "Entitled share", sort: (p) => p.entitled_share,
            cell: (p) => shareCell(p.entitled_share, PALETTE[4], "entitled") },
          { key: "usage", label: "Usage share", sort: (p) => p.usage_share,
            cell: (p) => shareCell(p.usage_share, PALETTE[0], "usage") },
          { key: "held", label: "Holds", sort: (p) => p.cpus_used,
            cell: (p) => `${fmt.num(p.cpus_used)} CPU, ${p.gpus_used} GPU` },
          { key: "jobs", label: "Running / queued", className: "num", sort: (p) => p.running_jobs,
            cell: (p) => `${p.running_jobs} / ${p.queued_jobs}` },
          { key: "energy", label: "Energy used", className: "num", sort: (p) => p.energy_j,
            cell: (p) => `${fmt.energy(p.energy_j)}, ${fmt.carbon(p.co2e_g)}` },
          { key: "donated", label: "Donates", sort: (p) => p.donated_cpus,
            cell: (p) => (p.donated_nodes ? `${plural(p.donated_nodes, "node")}: `
              + `${fmt.num(p.donated_cpus)} CPU, ${p.donated_gpus} GPU` : "—") },
          { key: "credit", label: "Donated energy", className: "num", sort: (p) => p.donated_energy_j,
            cell: (p) => (p.donated_energy_j ? fmt.energy(p.donated_energy_j) : "—") },
        ],
        empty: "No project yet." }),
      h("p", { class: "muted" }, "Donor credits: nodes enrolled with a donor project, and the energy ",
        "those machines spent on pool jobs (PUE applied)."),
    ];
  },
};

export const pages = { pool, nodes, jobs, job, fairness };
