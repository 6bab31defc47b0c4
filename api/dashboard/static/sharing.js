// The sharing pages: artifacts (models and datasets, with model cards and lineage) and the
// services that serve models. Data from /artifacts and /jobs?kind=service; downloads are
// fetched with the user's token (never put in a URL) and checked against their sha256.

import { api, API, ApiError, getToken } from "./api.js";
import { canCancel, section } from "./pages.js";
import { badge, confirmAction, fmt, h, notify, table, timeEl } from "./ui.js";

const artifactView = { filters: { kind: "", q: "" }, sort: { key: "created", dir: "desc" } };
const serviceView = { sort: { key: "submitted", dir: "desc" } };

function refLink(ref) {
  return h("a", { href: `#/artifacts/${encodeURIComponent(ref)}`, dataset: { key: `open:${ref}` } },
    ref);
}

function artifactFilters(ctx) {
  const kind = h("select", { id: "artifact-kind", name: "kind" },
    [["", "Models and datasets"], ["model", "Models"], ["dataset", "Datasets"]].map(([v, label]) =>
      h("option", { value: v, selected: artifactView.filters.kind === v }, label)));
  const q = h("input", { id: "artifact-q", name: "q", type: "search", value: artifactView.filters.q,
    placeholder: "name or description" });
  const apply = (event) => {
    event.preventDefault();
    artifactView.filters = { kind: kind.value, q: q.value.trim() };
    ctx.refresh();
  };
  return h("form", { class: "filters", role: "search", onsubmit: apply },
    h("label", { for: "artifact-kind" }, "Kind"), kind,
    h("label", { for: "artifact-q" }, "Search"), q,
    h("button", { type: "submit" }, "Search"));
}

const artifacts = {
  title: "Artifacts",
  enter() {
    artifactView.form = null;
  },
  async load() {
    const f = artifactView.filters;
    return api("/artifacts", { query: { limit: 200, kind: f.kind, q: f.q } });
  },
  render(page, ctx) {
    const columns = [
      { key: "ref", label: "Artifact", rowHeader: true, sort: (a) => a.ref, cell: (a) => refLink(a.ref) },
      { key: "kind", label: "Kind", sort: (a) => a.kind, cell: (a) => a.kind },
      { key: "format", label: "Format", sort: (a) => a.format, cell: (a) => a.format },
      { key: "size", label: "Size", className: "num", sort: (a) => a.size_bytes,
        cell: (a) => fmt.bytes(a.size_bytes) },
      { key: "project", label: "Project", sort: (a) => a.project, cell: (a) => a.project },
      { key: "visibility", label: "Visibility", sort: (a) => a.visibility, cell: (a) => a.visibility },
      { key: "from", label: "From job", cell: (a) => (a.produced_by_job
        ? h("a", { href: `#/jobs/${a.produced_by_job}` }, a.produced_by_job) : "uploaded") },
      { key: "downloads", label: "Downloads", className: "num", sort: (a) => a.downloads,
        cell: (a) => a.downloads },
      { key: "created", label: "Published", sort: (a) => a.created_at,
        cell: (a) => timeEl(a.created_at, fmt.ago(a.created_at)) },
    ];
    return [
      h("h1", {}, "Artifacts"),
      (artifactView.form ||= artifactFilters(ctx)),
      table({ id: "artifacts", caption: "Models and datasets you may see", columns,
        rows: page.items, rowKey: (a) => a.ref, sort: artifactView.sort,
        onSort: (s) => { artifactView.sort = s; ctx.rerender(); },
        empty: "No artifact matches. Publish one with `commonpool artifacts upload` or a job's `publish:`." }),
    ];
  },
};

async function sha256Hex(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Fetch the artifact with the token, check its sha256, and hand it to the browser to save. */
async function download(artifact) {
  const response = await fetch(`${API}/artifacts/${encodeURIComponent(artifact.ref)}/content`, {
    headers: { Authorization: `Bearer ${getToken()}` }, cache: "no-store", credentials: "omit" });
  if (!response.ok) {
    notify(`Download refused: ${response.status} ${response.statusText}`, "error");
    return;
  }
  const blob = await response.blob();
  if (crypto.subtle && await sha256Hex(blob) !== artifact.sha256) {
    notify("The download did not match its sha256; nothing was saved. Try again.", "error");
    return;
  }
  const link = h("a", { href: URL.createObjectURL(blob),
    download: `${artifact.name}-${artifact.version}.tar` });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  notify(`${artifact.ref} downloaded (sha256 checked).`, "ok");
}

function cardFacts(a) {
  const card = a.card;
  const lineage = card.lineage || {};
  const facts = [
    ["Kind / format", `${a.kind} / ${a.format}`], ["Size", fmt.bytes(a.size_bytes)],
    ["sha256", h("code", { class: "wrap" }, a.sha256)],
    ["Owner / project", `${a.owner} / ${a.project}`], ["Visibility", a.visibility],
    ["Licence", a.licence || "—"], ["Description", a.description || "—"],
    ["Published", timeEl(a.created_at)],
  ];
  if (lineage.produced_by_job) {
    facts.push(["Produced by job", h("a", { href: `#/jobs/${lineage.produced_by_job}` },
      lineage.produced_by_job)]);
    facts.push(["Datasets", (lineage.datasets || []).length
      ? lineage.datasets.map((ref, i) => [i ? ", " : "", refLink(ref)]) : "—"]);
    facts.push(["Base model", lineage.base_model ? refLink(lineage.base_model) : "—"]);
  }
  return facts;
}

function trainingFacts(training) {
  const numbers = Object.entries(training.metrics || {}).filter(([, v]) => typeof v === "number");
  const e = training.energy;
  return [
    ["Final metrics", numbers.length ? numbers.map(([k, v]) => `${k} ${fmt.sig(v)}`).join(", ") : "—"],
    ["Training time", fmt.duration(training.training_time_s)],
    ["Attempts", training.attempts], ["Nodes", (training.nodes || []).join(", ") || "—"],
    ["Energy", `${fmt.energy(e.kwh * 3.6e6)}, ${fmt.carbon(e.co2e_g)}`
      + (e.estimated_percent ? ` (${fmt.num(e.estimated_percent)} % estimated)` : "")],
    ["Method", e.method || "—"],
  ];
}

function dl(facts) {
  return h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

const artifact = {
  title: "Artifact",
  async load(ctx) {
    return api(`/artifacts/${encodeURIComponent(ctx.route.id)}`);
  },
  render(a) {
    document.title = `${a.ref} · commonpool`;
    const card = a.card;
    const reuse = card.reuse;
    return [
      h("p", { class: "crumbs" }, h("a", { href: "#/artifacts" }, "Artifacts"), " › ", a.ref),
      h("div", { class: "title-row" }, h("h1", {}, a.ref),
        h("button", { type: "button", class: "primary small", id: "download",
          onclick: () => download(a) }, "Download")),
      section("Model card", dl(cardFacts(a))),
      card.training ? section("Training", dl(trainingFacts(card.training))) : null,
      (card.compression || []).length ? section("Compression", h("ul", {},
        card.compression.map((c) => h("li", {}, h("a", { href: `#/jobs/${c.job}` }, c.job), ": ",
          Object.entries(c.metrics || {}).filter(([, v]) => typeof v === "number").slice(0, 8)
            .map(([k, v]) => `${k} ${fmt.sig(v)}`).join(", "))))) : null,
      section("Reuse", dl([
        ["Jobs started from it", reuse.jobs_started_from_it], ["Downloads", reuse.downloads],
        ["Energy saved by reuse", reuse.energy_saved_kwh
          ? fmt.energy(reuse.energy_saved_kwh * 3.6e6) : "—"],
      ])),
    ];
  },
};

async function stopService(job, refresh) {
  const answer = await confirmAction({
    title: `Stop service ${job.name}?`,
    message: `${job.id} stops answering; its replicas end and its allocation is released.`,
    confirmLabel: "Stop service",
  });
  if (!answer) return;
  try {
    const after = await api(`/jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST",
      body: { reason: answer.reason } });
    notify(`Service ${job.name} is ${after.state}.`, "ok");
  } catch (err) {
    notify(`Stop refused: ${err.message}`, "error");
  }
  await refresh();
}

const services = {
  title: "Services",
  async load() {
    const page = await api("/jobs", { query: { kind: "service", limit: 200 } });
    const live = page.items.filter((j) => j.state === "RUNNING");
    const figures = await Promise.all(live.map((j) =>
      api(`/services/${encodeURIComponent(j.id)}`).catch((err) => {
        if (err instanceof ApiError) return null;
        throw err;
      })));
    return { items: page.items, figures: new Map(live.map((j, i) => [j.id, figures[i]])) };
  },
  render({ items, figures }, ctx) {
    const f = (j) => figures.get(j.id);
    const columns = [
      { key: "name", label: "Service", rowHeader: true, sort: (j) => j.name,
        cell: (j) => h("span", { class: "ident" }, h("a", { href: `#/jobs/${j.id}` }, j.name),
          h("code", {}, j.id)) },
      { key: "state", label: "State", sort: (j) => j.state, cell: (j) => badge(j.state) },
      { key: "model", label: "Model", cell: (j) => (f(j)?.model ? refLink(f(j).model) : "—") },
      { key: "replicas", label: "Replicas", className: "num", sort: (j) => j.workers_max,
        cell: (j) => (f(j) ? `${f(j).replicas_running ?? "?"} of ${j.workers_max}` : `${j.workers_max}`) },
      { key: "requests", label: "Requests", className: "num",
        sort: (j) => f(j)?.requests ?? j.metrics.requests ?? 0,
        cell: (j) => fmt.num(f(j)?.requests ?? j.metrics.requests ?? 0) },
      { key: "latency", label: "p50 / p99", className: "num",
        cell: (j) => (f(j)?.latency_p50_ms != null
          ? `${fmt.num(f(j).latency_p50_ms)} / ${fmt.num(f(j).latency_p99_ms)} ms` : "—") },
      { key: "energy", label: "Per 1,000 requests", className: "num",
        cell: (j) => (f(j)?.kwh_per_1000_requests != null
          ? `${fmt.energy(f(j).kwh_per_1000_requests * 3.6e6)}, ${fmt.carbon(f(j).co2e_g_per_1000_requests)}`
          : "—") },
      { key: "submitted", label: "Started", sort: (j) => j.submitted_at,
        cell: (j) => timeEl(j.submitted_at, fmt.ago(j.submitted_at)) },
      { key: "actions", label: "Actions", cell: (j) => (canCancel(j, ctx.me)
        ? h("button", { type: "button", class: "danger small", dataset: { key: `stop:${j.id}` },
          "aria-label": `Stop service ${j.name}`, onclick: () => stopService(j, ctx.refresh) }, "Stop")
        : null) },
    ];
    return [
      h("h1", {}, "Services"),
      h("p", {}, "Models served over HTTP on pool nodes: ", h("code", {}, "POST /api/v1/services/ID/predict"),
        " with your token. Start one with ", h("code", {}, "commonpool serve MODEL@VERSION"), "."),
      table({ id: "services", caption: "Services, newest first", columns, rows: items,
        rowKey: (j) => j.id, sort: serviceView.sort,
        onSort: (s) => { serviceView.sort = s; ctx.rerender(); }, empty: "No service yet." }),
    ];
  },
};

export const sharingPages = { artifacts, artifact, services };
