// The pages. Each renders into `root` from the API's answers and returns a refresh function
// (or nothing). Actions are offered only where the caller's permissions (GET /api/v1/me, from
// the API's own role table) allow them; the API decides again on every call.
import * as api from "./api.js";
import { can, me, navigate } from "./app.js";
import { throughputChart } from "./charts.js";
import { ago, badge, confirmDialog, duration, errorBox, fill, h, number, pretty, progressBar, section, table, toast, when } from "./ui.js";

const STATUSES = ["scheduled", "pending", "running", "completed", "failed", "cancelled", "timeout"];
const FINISHED = new Set(["completed", "failed", "cancelled", "timeout"]);
const PRIORITIES = ["critical", "high", "medium", "low"];
const LEVELS = ["debug", "info", "warning", "error", "critical"];

function jobLink(id, text) {
  // UUIDv7s made together share their first digits: the end tells them apart.
  return h("a", { href: `#/job/${id}`, class: "mono", title: id }, text || `${id.slice(0, 8)}…${id.slice(-6)}`);
}

async function perform(label, call, after) {
  try {
    const answer = await call();
    toast(answer && answer.message ? answer.message : `${label}: done`, "ok");
    if (after) await after(answer);
  } catch (failure) {
    toast(`${label}: ${failure.message}`, "error");
  }
}

// --- overview ---------------------------------------------------------------------------------

async function overview(root) {
  const counts = h("div", { class: "tiles", id: "status-counts" });
  const charts = h("div", { class: "charts" });
  const queues = h("div");
  const running = h("div");
  const alerts = h("div", { id: "active-alerts" });
  fill(root, 
    h("h1", {}, "Overview"),
    can("alerts:read") ? section("Active alerts", alerts) : null,
    section("Jobs by status", counts),
    section("Throughput and error rate", charts),
    section("Queues", queues),
    section("Running now", running),
  );
  let chartsAt = 0;
  async function refresh() {
    const [summary, queueList, runningJobs] = await Promise.all([
      api.get("/api/v1/jobs/stats/summary"),
      api.get("/api/v1/jobs/queues"),
      api.get("/api/v1/jobs", { status: "running", limit: 20 }),
    ]);
    const data = summary.data;
    fill(counts, 
      tile("total", data.total, "#/jobs"),
      ...STATUSES.map((s) => tile(s, data[s] || 0, `#/jobs?status=${s}`)),
    );
    fill(queues, queueTable(queueList.queues, false));
    fill(running, runningTable(runningJobs.data.jobs));
    if (can("alerts:read")) fill(alerts, alertTable((await api.get("/api/v1/alerts", { status: "active" })).data.alerts));
    if (Date.now() - chartsAt > 15000) {
      chartsAt = Date.now();
      const [hour, day] = await Promise.all([
        api.get("/api/v1/jobs/stats/throughput", { window: "1h" }),
        api.get("/api/v1/jobs/stats/throughput", { window: "24h" }),
      ]);
      fill(charts, throughputChart(hour.data, "Last hour"), throughputChart(day.data, "Last 24 hours"));
    }
  }
  await refresh();
  return refresh;
}

const METRIC_NAMES = { error_rate: "error rate", latency_p95_ms: "p95 run time" };

function alertTable(alerts) {
  const shown = (a, value) => (a.metric === "error_rate" ? `${(value * 100).toFixed(1)} %` : `${number(Math.round(value))} ms`);
  return table(
    [
      { title: "Job type", cell: (a) => a.jobType },
      { title: "Metric", cell: (a) => METRIC_NAMES[a.metric] || a.metric },
      { title: "Value", cell: (a) => shown(a, a.value) },
      { title: "Threshold", cell: (a) => shown(a, a.threshold) },
      { title: "Samples", cell: (a) => number(a.samples) },
      { title: "Raised", cell: (a) => when(a.raisedAt) },
    ],
    alerts,
    { caption: "Alerts raised and not yet cleared", empty: "No active alert." },
  );
}

function tile(label, value, href) {
  return h("a", { class: `tile status-${label}`, href, dataset: { status: label } }, h("span", { class: "tile-value" }, number(value)), h("span", { class: "tile-label" }, label));
}

function runningTable(jobs) {
  return table(
    [
      { title: "Job", cell: (j) => jobLink(j.id) },
      { title: "Type", cell: (j) => j.type },
      { title: "Priority", cell: (j) => j.priority },
      { title: "Started", cell: (j) => ago(j.startedAt) },
      { title: "Progress", class: "wide", cell: (j) => progressBar(j.progress, `progress of job ${j.id}`) },
    ],
    jobs,
    { empty: "No job is running." },
  );
}

function queueTable(queues, actions) {
  const columns = [
    { title: "Queue", cell: (q) => h("a", { href: `#/jobs?queue=${encodeURIComponent(q.name)}` }, q.name) },
    { title: "State", cell: (q) => (q.paused ? badge("paused") : badge("active")) },
    { title: "Pending", cell: (q) => number(q.pending) },
    { title: "Scheduled", cell: (q) => number(q.scheduled) },
    { title: "Running", cell: (q) => number(q.running) },
    { title: "Oldest pending", cell: (q) => (q.oldest_pending_age_seconds === null ? "–" : duration(q.oldest_pending_age_seconds)) },
    { title: "Done last hour", cell: (q) => number(q.completed_last_hour) },
    { title: "Failed last hour", cell: (q) => number(q.failed_last_hour) },
    { title: "Workers (slots)", cell: (q) => `${q.workers} (${q.concurrency})` },
  ];
  if (actions) {
    columns.push({
      title: "Actions",
      cell: (q) => {
        const verb = q.paused ? "resume" : "pause";
        return h("button", { type: "button", onclick: () => perform(`${verb} ${q.name}`, () => api.act("POST", `/api/v1/jobs/queues/${encodeURIComponent(q.name)}/${verb}`), () => navigate(location.hash)) }, q.paused ? "Resume" : "Pause");
      },
    });
  }
  return table(columns, queues, { empty: "No queue has jobs or workers yet." });
}

// --- jobs ------------------------------------------------------------------------------------------

const FILTERS = ["status", "type", "queue", "priority", "org_id", "label", "batch_id", "created_after", "created_before", "sort"];

// The list's orders (the API's `sort`): by creation its own words, the other keys `[-]key`.
const SORTS = [
  ["newest", "newest first"],
  ["oldest", "oldest first"],
  ["-priority", "priority, highest first"],
  ["priority", "priority, lowest first"],
  ["status", "status, A to Z"],
  ["-status", "status, Z to A"],
  ["type", "type, A to Z"],
  ["-type", "type, Z to A"],
  ["run_at", "due, soonest first"],
  ["-run_at", "due, latest first"],
  ["-finished", "finished, latest first"],
  ["finished", "finished, earliest first"],
];
// The direction a column sorts in when its header is first clicked.
const FIRST_DESCENDING = new Set(["created", "priority", "finished"]);

function sortOf(value) {
  if (!value || value === "newest") return { key: "created", descending: true };
  if (value === "oldest") return { key: "created", descending: false };
  return { key: value.replace(/^-/, ""), descending: value.startsWith("-") };
}

function sortValue(key, descending) {
  if (key === "created") return descending ? "newest" : "oldest";
  return (descending ? "-" : "") + key;
}

async function jobs(root, { params }) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || ""]));
  const form = filterForm(filters);
  const search = h(
    "form",
    { class: "inline", role: "search", "aria-label": "Find a job by id" },
    h("label", {}, "Job id ", h("input", { name: "id", placeholder: "a job's id", size: 38, required: true })),
    h("button", { type: "submit" }, "Open"),
  );
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = search.id.value.trim();
    if (id) navigate(`#/job/${encodeURIComponent(id)}`);
  });
  const listing = h("div", { id: "job-list" });
  fill(root, h("h1", {}, "Jobs"), search, form, listing);
  const cursors = [null]; // cursors[i]: where page i+1 starts
  let page = 0;
  const sort = sortOf(filters.sort);
  function sortBy(key) {
    const descending = key === sort.key ? !sort.descending : FIRST_DESCENDING.has(key);
    const out = new URLSearchParams(params);
    const value = sortValue(key, descending);
    if (value === "newest") out.delete("sort");
    else out.set("sort", value);
    navigate(`#/jobs${out.toString() ? "?" + out : ""}`);
  }
  async function load() {
    const query = { limit: 50, cursor: cursors[page] };
    for (const [key, value] of Object.entries(filters)) {
      if (!value) continue;
      query[key] = /^created_/.test(key) ? new Date(value + "Z").toISOString() : value;
    }
    const answer = await api.get("/api/v1/jobs", query);
    const data = answer.data;
    if (data.nextCursor) cursors[page + 1] = data.nextCursor;
    const prev = h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; load(); } }, "← Newer");
    const last = page * 50 + data.jobs.length;
    const next = h("button", { type: "button", disabled: !data.nextCursor || last >= data.total, onclick: () => { page += 1; load(); } }, "Older →");
    if (sort.key !== "created") {
      prev.textContent = "← Previous";
      next.textContent = "Next →";
    } else if (!sort.descending) {
      prev.textContent = "← Older";
      next.textContent = "Newer →";
    }
    const first = page * 50 + 1;
    fill(listing, 
      h("p", { class: "count", id: "job-count" }, data.jobs.length ? `Jobs ${number(first)}–${number(last)} of ${number(data.total)}` : `No job matches (${number(data.total)}).`),
      table(
        [
          { title: "Job", cell: (j) => jobLink(j.id) },
          { title: "Type", sortKey: "type", cell: (j) => j.type },
          { title: "Status", sortKey: "status", cell: (j) => badge(j.status) },
          { title: "Priority", sortKey: "priority", cell: (j) => `${j.priority} (${j.priority_level})` },
          { title: "Progress", class: "wide", cell: (j) => progressBar(j.progress, `progress of job ${j.id}`) },
          { title: "Created", sortKey: "created", cell: (j) => when(j.createdAt) },
          { title: "Due", sortKey: "run_at", cell: (j) => when(j.runAt) },
          { title: "Finished", sortKey: "finished", cell: (j) => when(j.completedAt) },
        ],
        data.jobs,
        {
          caption: "Jobs, " + (SORTS.find(([value]) => value === sortValue(sort.key, sort.descending)) || SORTS[0])[1],
          empty: "No job matches these filters.",
          sort: { ...sort, by: sortBy },
        },
      ),
      h("nav", { class: "pager", "aria-label": "Pages" }, prev, h("span", {}, `page ${page + 1}`), next),
    );
  }
  await load();
  return load; // the page shown, read again (live: app.js calls it when jobs change)
}

function filterForm(filters) {
  const select = (name, label, options) =>
    h("label", {}, label + " ", h("select", { name }, h("option", { value: "" }, "any"), options.map((o) => h("option", { value: o, selected: filters[name] === o }, o))));
  const input = (name, label, attrs = {}) => h("label", {}, label + " ", h("input", { name, value: filters[name], ...attrs }));
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter jobs" },
    select("status", "Status", STATUSES),
    input("type", "Type", { placeholder: "e.g. sleep" }),
    input("queue", "Queue"),
    select("priority", "Priority", PRIORITIES),
    me().superAdmin ? input("org_id", "Organisation") : null,
    input("label", "Label", { placeholder: "key:value", pattern: "[^:]+:.*" }),
    filters.batch_id ? input("batch_id", "Batch") : null,
    input("created_after", "Created from", { type: "datetime-local", step: 1 }),
    input("created_before", "Created before", { type: "datetime-local", step: 1 }),
    // labelled by id, not by wrapping: its options name the other fields ("priority, …")
    h("span", { class: "field" }, h("label", { for: "sort-order" }, "Order"), h("select", { name: "sort", id: "sort-order" }, SORTS.map(([value, text]) => h("option", { value, selected: (filters.sort || "newest") === value }, text)))),
    h("button", { type: "submit", class: "primary" }, "Apply"),
    h("a", { href: "#/jobs", class: "button" }, "Clear"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const name of FILTERS) {
      const field = form.elements[name];
      if (field && field.value && !(name === "sort" && field.value === "newest")) params.set(name, field.value);
    }
    navigate(`#/jobs${params.toString() ? "?" + params : ""}`);
  });
  return form;
}

// --- one job -----------------------------------------------------------------------------------------

async function job(root, { parts, isCurrent }) {
  const id = decodeURIComponent(parts[1] || "");
  const head = h("div");
  const progress = h("div");
  const details = h("div");
  const input = h("div", { id: "job-data" });
  const result = h("div");
  const attempts = h("div", { id: "attempt-errors" });
  const logs = h("div");
  const audit = h("div");
  fill(root, 
    h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
    head,
    section("Progress", progress),
    section("Details and timeline", details),
    section("Input data", input),
    section("Result and errors", result),
    section("Attempts that ended in an error", attempts),
    section("Logs", logs),
    can("audit:read") ? section("Audit records and signatures", audit) : section("Signatures", audit),
  );
  let current = null;
  let finishedShown = false;
  let attemptsShown = null; // the attempt and status the list was read at

  async function refresh() {
    current = (await api.get(`/api/v1/jobs/${encodeURIComponent(id)}`, { include: "data" })).data;
    renderHead(head, current, reload);
    renderProgress(progress, current);
    renderDetails(details, current);
    renderData(input, current);
    if (!finishedShown || !FINISHED.has(current.status)) renderResult(result, current);
    finishedShown = FINISHED.has(current.status);
    const seen = `${current.attempts}/${current.status}`;
    if (seen !== attemptsShown) {
      attemptsShown = seen;
      await renderAttempts(attempts, id);
    }
  }
  async function reload() {
    await refresh();
    await logView.load();
    await renderAudit(audit, current);
  }
  await refresh();
  const logView = logPanel(logs, id);
  await logView.load();
  await renderAudit(audit, current);
  // Live through the job's event stream; while it flows the polling below stands aside, and
  // takes over if the stream cannot be opened or breaks.
  let following = !FINISHED.has(current.status);
  if (following) {
    follow().finally(() => {
      following = false;
    });
  }
  async function follow() {
    const controller = new AbortController();
    const stop = () => controller.abort();
    window.addEventListener("hashchange", stop, { once: true });
    try {
      for await (const [name, data] of api.stream(`/api/v1/jobs/${encodeURIComponent(id)}/events`, controller.signal)) {
        if (!isCurrent()) break;
        if (name === "end") {
          await reload();
          break;
        }
        current = { ...current, ...data };
        renderHead(head, current, reload);
        renderProgress(progress, current);
        renderDetails(details, current);
        // The logs (sealed for a sensitive job: every read is recorded) load again at the end.
      }
    } catch (failure) {
      if (failure.name !== "AbortError") console.warn("job stream ended", failure);
    } finally {
      window.removeEventListener("hashchange", stop);
    }
  }
  return async () => {
    if (following) return;
    if (current && FINISHED.has(current.status) && finishedShown) return;
    await refresh();
    await logView.load();
  };
}

function renderHead(el, j, reload) {
  const actions = h("div", { class: "actions", id: "job-actions" });
  if (can("jobs:manage")) {
    if (!FINISHED.has(j.status) && !j.cancelRequested) {
      actions.append(h("button", { type: "button", class: "danger", onclick: () => cancelJob(j, reload) }, "Cancel job"));
    }
    if (["failed", "cancelled", "timeout"].includes(j.status)) {
      actions.append(h("button", { type: "button", onclick: () => retryJob(j) }, "Retry"));
    }
    if (j.status !== "running") {
      actions.append(h("button", { type: "button", class: "danger", onclick: () => deleteJob(j) }, "Delete job"));
    }
  }
  fill(el, 
    h("h1", {}, "Job ", h("span", { class: "mono" }, j.id)),
    h("p", { class: "subtitle" }, badge(j.status), " ", h("strong", {}, j.type), ` · queue ${j.queue} · priority ${j.priority} (${j.priorityLevel})`, j.cancelRequested && !FINISHED.has(j.status) ? " · cancellation requested" : ""),
    actions,
  );
}

async function cancelJob(j, reload) {
  if (!(await confirmDialog(`Cancel job ${j.id} (${j.type})? A running job stops at its next checkpoint.`, "Cancel job"))) return;
  await perform("cancel", () => api.act("POST", `/api/v1/jobs/${j.id}/cancel`, { operation: "Cancelling this job" }), reload);
}

async function deleteJob(j) {
  if (!(await confirmDialog(`Delete job ${j.id} (${j.type}) for good, with its result and logs? The audit trail keeps a record of it.`, "Delete job"))) return;
  await perform("delete", () => api.act("DELETE", `/api/v1/jobs/${j.id}`, { query: { purge: "true" }, operation: "Deleting this job" }), () => navigate("#/jobs"));
}

async function retryJob(j) {
  await perform(
    "retry",
    () => api.act("POST", `/api/v1/jobs/${j.id}/retry`, { operation: "Retrying this job" }),
    (answer) => navigate(`#/job/${answer.data.jobId}`),
  );
}

function renderProgress(el, j) {
  const stats = j.processingStats || {};
  const step = j.currentStep;
  const rows = [
    ["Items", stats.totalItems !== undefined ? `${number(stats.processedItems)} of ${number(stats.totalItems)} (${number(stats.successfulItems)} ok, ${number(stats.failedItems)} failed)` : null],
    ["Speed", stats.currentSpeed || null],
    ["Estimated completion", j.estimatedCompletion ? `${when(j.estimatedCompletion)}` : null],
    ["Current step", step ? `${step.step} of ${step.totalSteps}${step.name ? ": " + step.name : ""}` : null],
  ].filter(([, v]) => v);
  fill(el, 
    progressBar(j.progress, "job progress"),
    rows.length ? h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : null,
  );
}

function renderDetails(el, j) {
  const owner = j.owner || {};
  const labels = Object.entries(j.labels || {});
  const facts = [
    ["Attempts", `${j.attempts} of ${j.maxAttempts}`],
    ["Timeout", j.timeoutSeconds ? duration(j.timeoutSeconds) : "–"],
    ["Owner", [owner.createdBy || owner.userId, owner.orgId ? `organisation ${owner.orgId}` : null, owner.studyId ? `study ${owner.studyId}` : null].filter(Boolean).join(" · ") || "–"],
    ["Labels", labels.length ? labels.map(([k, v]) => `${k}=${v}`).join(", ") : "–"],
    ["Batch", j.batchId ? h("a", { href: `#/jobs?batch_id=${j.batchId}` }, j.batchId) : "–"],
    ["Retry of", j.retryOf ? jobLink(j.retryOf, j.retryOf) : "–"],
  ];
  const timeline = [
    ["Created", j.createdAt],
    ["Due", j.runAt],
    ["Started", j.startedAt],
    ["Finished", j.completedAt],
    ["Last change", j.updatedAt],
  ];
  fill(el, 
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h3", {}, "Timeline"),
    h("ol", { class: "timeline" }, timeline.filter(([, v]) => v).map(([k, v]) => h("li", {}, h("strong", {}, k), " ", when(v)))),
  );
}

// A sensitive job's fields come masked from the API to a role that may not read them
// (`masked` names them); the page shows what it got and says why.
function maskedNote(j, field) {
  if (!(j.masked || []).includes(field)) return null;
  return h("p", { class: "masked-note", role: "note" }, `Sensitive: your role may not read this job's ${field}, so its values are masked.`);
}

function renderData(el, j) {
  fill(el, maskedNote(j, "data"), pretty(j.data ?? null));
}

function renderResult(el, j) {
  const parts = [];
  if (j.error) parts.push(h("h3", {}, "Error"), pretty(j.error));
  if (j.itemErrors && j.itemErrors.length) {
    parts.push(
      h("h3", {}, `Per-item errors (${number(j.itemErrors.length)}${j.itemErrorsOmitted ? `, ${number(j.itemErrorsOmitted)} more not kept` : ""})`),
      table(
        [
          { title: "Item", cell: (e) => (e.item ?? e.index ?? e.row ?? "–") },
          { title: "Error", cell: (e) => e.error ?? e.message ?? JSON.stringify(e) },
        ],
        j.itemErrors.slice(0, 200),
      ),
    );
  }
  if (j.status === "completed") {
    const save = h("button", { type: "button", onclick: () => api.saveBlob(new Blob([JSON.stringify(j.result, null, 2)], { type: "application/json" }), `job-${j.id}-result.json`) }, "Download result (JSON)");
    parts.push(h("h3", {}, "Result"), maskedNote(j, "result"), save, pretty(j.result ?? null));
  }
  if (!parts.length) parts.push(h("p", { class: "muted" }, FINISHED.has(j.status) ? "No result." : "The result appears when the job completes."));
  fill(el, ...parts);
}

// Each attempt that ended in an error left a line of the worker's in the job's log.
async function renderAttempts(el, id) {
  const answer = (await api.get(`/api/v1/jobs/${encodeURIComponent(id)}/logs`, { level: "warning", limit: 200 })).data;
  const ends = answer.logs.filter((line) => line.component === "worker" && /^attempt \d+ of \d+ ended/.test(line.message));
  fill(el, 
    table(
      [
        { title: "Attempt", cell: (line) => String(line.attempt ?? "–") },
        { title: "Ended", cell: (line) => when(line.timestamp) },
        { title: "Error", cell: (line) => line.message.replace(/^attempt \d+ of \d+ ended: /, "") },
      ],
      ends,
      { empty: "No attempt has ended in an error." },
    ),
  );
}

function logPanel(el, id) {
  let level = "";
  let offset = 0;
  const size = 50;
  const body = h("div");
  const levelSelect = h("select", { name: "level", onchange: () => { level = levelSelect.value; offset = 0; view.load(); } }, h("option", { value: "" }, "all"), LEVELS.map((l) => h("option", { value: l }, `${l} and above`)));
  fill(el, h("label", {}, "Level ", levelSelect), body);
  const view = {
    async load() {
      const answer = (await api.get(`/api/v1/jobs/${encodeURIComponent(id)}/logs`, { level, limit: size, offset })).data;
      const prev = h("button", { type: "button", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - size); view.load(); } }, "← Earlier");
      const next = h("button", { type: "button", disabled: offset + size >= answer.total, onclick: () => { offset += size; view.load(); } }, "Later →");
      fill(body, 
        table(
          [
            { title: "Time", cell: (l) => when(l.timestamp) },
            { title: "Level", cell: (l) => h("span", { class: `level level-${l.level}` }, l.level) },
            { title: "Attempt", cell: (l) => l.attempt ?? "–" },
            { title: "Component", cell: (l) => l.component || "–" },
            { title: "Message", class: "wide", cell: (l) => l.message },
          ],
          answer.logs,
          { empty: "No log lines." },
        ),
        h("nav", { class: "pager", "aria-label": "Log pages" }, prev, h("span", {}, answer.total ? `${offset + 1}–${Math.min(offset + size, answer.total)} of ${number(answer.total)}` : "0"), next),
      );
    },
  };
  return view;
}

async function renderAudit(el, j) {
  const parts = [];
  if (can("audit:read")) {
    // its own records and those naming it among others (a bulk enqueue, a worker's outcomes)
    const records = (await api.get("/api/v1/audit", { job_id: j.id, page_size: 100 })).data.records;
    parts.push(auditTable(records));
  }
  try {
    const signed = (await api.get(`/api/v1/jobs/${j.id}/signatures`)).data.signatures;
    parts.push(
      h("h3", {}, "E-signatures"),
      table(
        [
          { title: "Signed", cell: (s) => when(s.signedAt) },
          { title: "Signer", cell: (s) => `${s.signerName || ""} (${s.signerId})` },
          { title: "Meaning", cell: (s) => s.meaning },
          { title: "Action", cell: (s) => s.action || "–" },
        ],
        signed,
        { empty: "No signature was applied to this job." },
      ),
    );
  } catch (failure) {
    if (failure.status !== 404) parts.push(errorBox(failure));
    else if (!can("audit:read")) parts.push(h("p", { class: "muted" }, "This server records no e-signatures."));
  }
  fill(el, ...parts);
}

function auditTable(records) {
  return table(
    [
      { title: "#", cell: (r) => r.seq },
      { title: "When", cell: (r) => when(r.recordedAt) },
      { title: "Actor", cell: (r) => r.actorName || r.actorId || "–" },
      { title: "Action", cell: (r) => r.action },
      { title: "Object", cell: (r) => (r.objectType === "job" && r.objectId ? jobLink(r.objectId) : `${r.objectType} ${r.objectId || ""}`) },
      { title: "Change", class: "wide", cell: (r) => h("details", {}, h("summary", {}, "before / after"), pretty({ before: r.before, after: r.after })) },
      { title: "Request", cell: (r) => h("span", { class: "mono" }, r.requestId || "–") },
    ],
    records,
    { empty: "No audit record." },
  );
}

// --- queues, batches, schedules, workers -------------------------------------------------------------

async function queues(root) {
  const body = h("div");
  fill(root, h("h1", {}, "Queues"), body);
  async function refresh() {
    const answer = await api.get("/api/v1/jobs/queues");
    fill(body, queueTable(answer.queues, can("queues:manage")));
  }
  await refresh();
  return refresh;
}

async function batches(root, { params }) {
  const page = Number(params.get("page") || 1);
  const body = h("div");
  fill(root, h("h1", {}, "Batches"), body);
  async function refresh() {
    const data = (await api.get("/api/v1/batches", { page, limit: 20 })).data;
    fill(body, 
      table(
        [
          { title: "Batch", cell: (b) => h("a", { href: `#/jobs?batch_id=${b.id}` }, b.name || b.id) },
          { title: "Status", cell: (b) => badge(b.status) },
          { title: "Jobs", cell: (b) => number(b.total) },
          { title: "Progress", class: "wide", cell: (b) => batchProgress(b) },
          { title: "Created", cell: (b) => when(b.createdAt) },
          { title: "", cell: (b) => (can("jobs:manage") && !["completed", "failed", "cancelled"].includes(b.status) ? h("button", { type: "button", onclick: () => perform("cancel batch", () => api.act("POST", `/api/v1/batches/${b.id}/cancel`, { operation: "Cancelling this batch" }), refresh) }, "Cancel") : "") },
        ],
        data.batches,
        { empty: "No batch yet." },
      ),
      pager(page, data.hasNext, (p) => `#/batches?page=${p}`),
    );
  }
  await refresh();
  return refresh;
}

function batchProgress(b) {
  const c = b.counts;
  const done = (c.completed || 0) + (c.failed || 0) + (c.cancelled || 0) + (c.timeout || 0);
  const percent = b.total ? (100 * done) / b.total : 0;
  return h("div", {}, progressBar(percent, `batch ${b.name} finished`), h("small", { class: "muted" }, `${c.completed || 0} completed, ${(c.failed || 0) + (c.timeout || 0)} failed, ${c.cancelled || 0} cancelled, ${c.running || 0} running, ${(c.pending || 0) + (c.scheduled || 0)} waiting`));
}

function pager(page, hasNext, href) {
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    page > 1 ? h("a", { href: href(page - 1), class: "button" }, "← Previous") : null,
    h("span", {}, `page ${page}`),
    hasNext ? h("a", { href: href(page + 1), class: "button" }, "Next →") : null,
  );
}

async function schedules(root, { params }) {
  const page = Number(params.get("page") || 1);
  const body = h("div");
  fill(root, h("h1", {}, "Schedules"), body);
  async function refresh() {
    const answer = await api.get("/api/v1/jobs/schedules", { page, page_size: 20 });
    const manage = can("schedules:manage");
    fill(body, 
      table(
        [
          { title: "Name", cell: (s) => s.name },
          { title: "Job type", cell: (s) => s.job_type },
          { title: "Timing", cell: (s) => (s.cron ? `cron ${s.cron} (${s.timezone})` : `every ${duration(s.interval_seconds)}`) },
          { title: "State", cell: (s) => badge(s.enabled ? "active" : "paused") },
          { title: "Next run", cell: (s) => when(s.next_run_at) },
          { title: "Last run", cell: (s) => when(s.last_run_at) },
          {
            title: "",
            cell: (s) => {
              if (!manage) return "";
              const verb = s.enabled ? "pause" : "resume";
              return h(
                "div",
                { class: "actions" },
                h("button", { type: "button", onclick: () => perform(`${verb} ${s.name}`, () => api.act("POST", `/api/v1/jobs/schedules/${s.id}/${verb}`, { operation: `${verb === "pause" ? "Pausing" : "Resuming"} this schedule` }), refresh) }, s.enabled ? "Pause" : "Resume"),
                h("button", { type: "button", "aria-label": `Run ${s.name} now`, onclick: () => perform(`run ${s.name}`, () => api.act("POST", `/api/v1/jobs/schedules/${s.id}/run`, { operation: "Running this schedule now" }), (answer) => navigate(`#/job/${answer.job.job_id}`)) }, "Run now"),
              );
            },
          },
        ],
        answer.schedules,
        { empty: "No schedule yet." },
      ),
      pager(page, answer.pagination.has_next, (p) => `#/schedules?page=${p}`),
    );
  }
  await refresh();
  return refresh;
}

async function workers(root) {
  const body = h("div");
  fill(root, h("h1", {}, "Workers"), body);
  async function refresh() {
    const data = (await api.get("/api/v1/workers")).data;
    fill(body, 
      table(
        [
          { title: "Host", cell: (w) => w.hostname },
          { title: "PID", cell: (w) => w.pid },
          { title: "Queues", cell: (w) => w.queues.join(", ") },
          { title: "Concurrency", cell: (w) => w.concurrency },
          { title: "Running", cell: (w) => w.running },
          { title: "Started", cell: (w) => when(w.startedAt) },
          { title: "Last heartbeat", cell: (w) => `${w.lastSeenSecondsAgo}s ago` },
        ],
        data.workers,
        { empty: "No live worker: pending jobs wait until one starts." },
      ),
    );
  }
  await refresh();
  return refresh;
}

// --- audit trail -------------------------------------------------------------------------------------

const AUDIT_FILTERS = ["actor", "action", "object_type", "object_id", "since", "until"];

async function auditTrail(root, { params }) {
  if (!can("audit:read")) {
    fill(root, h("h1", {}, "Audit trail"), h("p", {}, "Your role may not read the audit trail."));
    return null;
  }
  const filters = Object.fromEntries(AUDIT_FILTERS.map((f) => [f, params.get(f) || ""]));
  const page = Number(params.get("page") || 1);
  const query = {};
  for (const [key, value] of Object.entries(filters)) {
    if (value) query[key] = key === "since" || key === "until" ? new Date(value + "Z").toISOString() : value;
  }
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter the audit trail" },
    ...AUDIT_FILTERS.map((f) => h("label", {}, f.replace("_", " ") + " ", h("input", { name: f, value: filters[f], type: f === "since" || f === "until" ? "datetime-local" : "text", step: 1 }))),
    h("button", { type: "submit", class: "primary" }, "Apply"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const out = new URLSearchParams();
    for (const f of AUDIT_FILTERS) if (form.elements[f].value) out.set(f, form.elements[f].value);
    navigate(`#/audit${out.toString() ? "?" + out : ""}`);
  });
  const verdict = h("p", { id: "audit-verdict", role: "status" });
  const tools = h(
    "div",
    { class: "actions" },
    h("button", { type: "button", onclick: () => verify(verdict) }, "Verify the chain"),
    h("button", { type: "button", onclick: () => perform("export", () => api.download("/api/v1/audit/export", { ...query, format: "csv" }, "conveyor-audit.csv")) }, "Export CSV"),
    h("button", { type: "button", onclick: () => perform("export", () => api.download("/api/v1/audit/export", { ...query, format: "json" }, "conveyor-audit.json")) }, "Export JSON"),
  );
  const data = (await api.get("/api/v1/audit", { ...query, page, page_size: 50 })).data;
  const pageHref = (p) => {
    const out = new URLSearchParams(params);
    out.set("page", p);
    return `#/audit?${out}`;
  };
  fill(root, 
    h("h1", {}, "Audit trail"),
    form,
    tools,
    verdict,
    h("p", { class: "count" }, `${number(data.total)} records`),
    auditTable(data.records),
    pager(page, data.hasNext, pageHref),
  );
  return null;
}

async function verify(el) {
  el.textContent = "Verifying…";
  try {
    const v = (await api.get("/api/v1/audit/verify")).data;
    const warnings = v.warnings && v.warnings.length ? ` Warnings: ${v.warnings.join("; ")}` : "";
    el.textContent = v.ok
      ? `Intact: ${number(v.records)} records, ${number(v.checkpoints)} checkpoints (${number(v.checkpointsSigned)} signed).${warnings}`
      : `Broken at record ${v.brokenSeq}: ${v.problem}`;
    el.className = v.ok ? "ok" : "error";
  } catch (failure) {
    el.textContent = failure.message;
    el.className = "error";
  }
}

export const PAGES = {
  overview,
  jobs,
  job,
  queues,
  batches,
  schedules,
  workers,
  audit: auditTrail,
};
