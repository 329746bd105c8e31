import { api, streamEvents } from "./api.js";
import { approvalForm } from "./approval.js";
import { badge, duration, facts, fmtTime, h, json, problemText, sleep } from "./dom.js";
import { drawGraph } from "./graph.js";

const EVENT_STATUS = { "node.started": "running", "node.retrying": "retrying",
  "node.succeeded": "succeeded", "node.failed": "failed", "node.skipped": "skipped",
  "node.waiting": "waiting", "node.cancelled": "cancelled" };
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const link = (id) => h("a", { href: `/ui/runs/${encodeURIComponent(id)}` }, id);

export async function render(main, id) {
  const path = `/executions/${encodeURIComponent(id)}`;
  let record;
  try { record = await api(path); } catch (err) {
    main.replaceChildren(h("h1", {}, "Run not found"), h("p.error", { role: "alert" }, problemText(err)));
    return;
  }
  let doc = null;
  if (record.workflow_id) {
    try {
      doc = await api(`/workflows/${encodeURIComponent(record.workflow_id)}?version=${record.workflow_version}`);
    } catch { /* deleted workflow: no graph */ }
  }
  let selected = null;
  const title = h("h1", {}, "Run ", h("span", { id: "run-id" }, id), " ", h("span", { id: "run-status" }));
  const header = h("section.card", { "aria-label": "Run summary", id: "run-header" });
  const say = h("p", { role: "status", id: "action-msg" });
  const cancel = h("button.danger", { type: "button", id: "btn-cancel", onclick: () => act("cancel") }, "Cancel run");
  const resume = h("button", { type: "button", id: "btn-resume", onclick: () => act("resume") }, "Resume");
  const rerun = h("button", { type: "button", id: "btn-rerun", onclick: () => act("rerun") }, "Re-run with same inputs");
  const approvals = h("section", { id: "approvals", "aria-label": "Waiting approvals" });
  const graph = doc ? drawGraph(doc, (n) => choose(n)) : null;
  const timeline = h("div.timeline", { id: "timeline" });
  const panel = h("aside.card", { id: "node-panel", "aria-label": "Node details", tabindex: "-1" },
    h("p.muted", {}, "Select a node in the graph or the timeline to see its details."));
  const io = h("div.grid2");
  const logs = h("div");
  const raw = h("pre", { id: "raw-json" });
  const legend = h("div.legend", { "aria-hidden": "true" },
    ["pending", "running", "retrying", "waiting", "succeeded", "failed", "skipped", "cancelled"].map(badge));

  main.replaceChildren(title, header, h("div.actions", {}, cancel, resume, rerun), say, approvals,
    h("div.run-layout", {},
      h("div", {},
        h("section.card", { "aria-labelledby": "graph-h" }, h("h2", { id: "graph-h" }, "Graph"), legend,
          graph ? graph.element : h("p.muted", {}, "The workflow document is not available.")),
        h("section.card", { "aria-labelledby": "tl-h" }, h("h2", { id: "tl-h" }, "Timeline"), timeline),
        h("section.card", { "aria-label": "Inputs and output" }, io),
        h("section.card", { "aria-labelledby": "logs-h" }, h("h2", { id: "logs-h" }, "Logs and errors"), logs),
        h("details.card", {}, h("summary", {}, "Raw JSON"), raw)),
      panel));

  function update(r) {
    record = r;
    title.querySelector("#run-status").replaceChildren(badge(r.status));
    const children = Object.entries(r.node_states).filter(([, s]) => s.child_execution_id);
    header.replaceChildren(facts([
      ["Status", r.status],
      ["Workflow", r.workflow_id ? h("a", { href: `/ui/workflows/${encodeURIComponent(r.workflow_id)}?version=${r.workflow_version}` },
        `${r.workflow_id} version ${r.workflow_version}`) : null],
      ["Created", fmtTime(r.created_at)], ["Started", fmtTime(r.started_at)],
      ["Finished", fmtTime(r.finished_at)], ["Duration", duration(r.started_at, r.finished_at)],
      ["Correlation id", r.correlation_id], ["Idempotency key", idempotencyKeys(r)],
      ["Parent run", r.parent_execution_id ? link(r.parent_execution_id) : null],
      ["Child runs", children.length ? h("span", {}, children.flatMap(([n, s], i) =>
        [i ? ", " : "", `${n}: `, link(s.child_execution_id)])) : null],
      ["Cancelled by", r.cancelled_by || undefined],
    ]));
    cancel.disabled = FINISHED.has(r.status);
    resume.disabled = r.status !== "failed";
    rerun.disabled = !r.workflow_id;
    graph?.setStates(r.node_states);
    drawTimeline(r);
    drawApprovals(r);
    io.replaceChildren(h("div", {}, h("h2", {}, "Inputs"), h("pre", { id: "run-inputs" }, json(r.inputs))),
      h("div", {}, h("h2", {}, "Output"), h("pre", { id: "run-output" }, json(r.output))));
    logs.replaceChildren(
      ...r.errors.map((e) => h("p.error", {}, `${e.node_id ? `${e.node_id}: ` : ""}${e.type}: ${e.message}`)),
      r.logs.length ? h("pre", { id: "run-logs" }, r.logs.map((l) => `${l.at} ${l.level} ${l.node_id || "-"} ${l.message}`).join("\n"))
        : h("p.muted", {}, "No log lines."));
    raw.textContent = json(r);
    if (selected) drawPanel(selected);
  }

  function idempotencyKeys(r) {
    const keys = Object.entries(r.node_states).filter(([, s]) => s.idempotency_key);
    return keys.length ? keys.map(([n, s]) => `${n}: ${s.idempotency_key}`).join(", ") : null;
  }

  function drawTimeline(r) {
    const lanes = Object.entries(r.node_states).filter(([, s]) => s.started_at)
      .sort(([, a], [, b]) => new Date(a.started_at) - new Date(b.started_at));
    if (!lanes.length) { timeline.replaceChildren(h("p.muted", {}, "No node has started yet.")); return; }
    const now = Date.now();
    const end = (s) => (s.finished_at ? new Date(s.finished_at).getTime()
      : FINISHED.has(r.status) ? new Date(s.started_at).getTime() : now);
    const t0 = Math.min(...lanes.map(([, s]) => new Date(s.started_at).getTime()));
    const span = Math.max(1, Math.max(...lanes.map(([, s]) => end(s))) - t0);
    timeline.replaceChildren(...lanes.map(([n, s]) => {
      const start = new Date(s.started_at).getTime();
      const left = ((start - t0) / span) * 100;
      const width = Math.max(0.5, ((end(s) - start) / span) * 100);
      const tries = s.attempts > 1 ? ` ×${s.attempts}` : "";
      const bar = h("button.bar", { type: "button", "data-node-id": n, "data-status": s.status,
        "data-attempts": s.attempts, "aria-label": `${n}: ${s.status}, ${s.attempts} attempt${s.attempts === 1 ? "" : "s"}, ${latency(s)}`,
        onclick: () => choose(n) }, width >= 8 ? `${s.status}${tries}` : "");  // else it would not fit
      bar.style.left = `min(${left}%, calc(100% - 6px))`;  // a short bar at the end stays inside
      bar.style.width = `${Math.min(width, 100 - left)}%`;
      return h("div.lane", { "data-node-id": n }, h("span.name", { title: n }, n), h("div.track", {}, bar));
    }), h("div.lane.axis", { "aria-hidden": "true" }, h("span"),
      h("div.scale", {}, h("span", {}, "0"), h("span", {}, `${(span / 1000).toFixed(span < 10000 ? 2 : 0)} s`))));
  }

  let shownPrompts = "";
  function drawApprovals(r) {
    const key = JSON.stringify(r.waiting_for.map((p) => [p.node_id, p.interrupt_id]));
    if (key === shownPrompts) return; // keep what the user is typing
    shownPrompts = key;
    approvals.replaceChildren(...(r.waiting_for.length
      ? [h("h2", {}, "Waiting for an answer"), ...r.waiting_for.map((p) => approvalForm(id, p, restart))] : []));
  }

  function latency(s) {
    if (s.latency_ms !== null && s.latency_ms !== undefined) return `${s.latency_ms.toFixed(1)} ms`;
    return s.started_at ? duration(s.started_at, s.finished_at) : "—";
  }

  function choose(nodeId) {
    selected = nodeId;
    graph?.select(nodeId);
    drawPanel(nodeId);
    panel.focus();
  }

  function drawPanel(nodeId) {
    const s = record.node_states[nodeId];
    const spec = doc?.nodes.find((n) => n.id === nodeId);
    const err = s?.error || null;
    panel.replaceChildren(...[h("h2", {}, "Node ", h("span", { id: "panel-node" }, nodeId)),
      facts([["Type", spec?.type || "—"], ["Status", s ? badge(s.status) : "not run yet"],
        ...(s ? [
          ["Attempts", h("span", { id: "panel-attempts" }, String(s.attempts))],
          ["Latency", latency(s)], ["Started", fmtTime(s.started_at)], ["Finished", fmtTime(s.finished_at)],
          ["Cached", s.cached === null ? "—" : String(s.cached)], ["Model", s.model],
          ["Idempotency key", s.idempotency_key],
          ["Child run", s.child_execution_id ? link(s.child_execution_id) : null],
          ["Error kind", err ? h("span", { id: "panel-error-kind" }, err.type || "—") : undefined],
          ["Error message", err ? h("span.error", { id: "panel-error-message" }, err.message || "—") : undefined],
        ] : [])]),
      s?.usage ? h("div", {}, h("h3", {}, "Usage"), h("pre", {}, json(s.usage))) : null,
      s ? h("div", {}, h("h3", {}, "Output"), h("pre", { id: "panel-output" }, json(s.output))) : null,
      spec?.config ? h("details", {}, h("summary", {}, "Config"), h("pre", {}, json(spec.config))) : null,
    ].filter(Boolean));
  }

  async function act(what) {
    say.className = "";
    try {
      if (what === "rerun") {
        const started = await api(`/workflows/${encodeURIComponent(record.workflow_id)}/execute`,
          { method: "POST", body: { inputs: record.inputs, mode: "async" } });
        location.href = `/ui/runs/${encodeURIComponent(started.execution_id)}`;
        return;
      }
      await api(`${path}/${what}`, { method: "POST", body: what === "resume" ? { mode: "async" } : {} });
      say.textContent = what === "cancel" ? "Cancel requested." : "Resumed.";
      restart();
    } catch (err) {
      say.className = "error";
      say.textContent = `${what} refused: ${problemText(err)}`;
    }
  }

  // Live: node colours change on each event at once; the record is read again shortly after.
  let lastSeq = 0, generation = 0, pending = null;
  async function refresh() {
    pending = null;
    try { update(await api(path)); } catch { /* the next event or poll tries again */ }
  }
  const soon = () => { pending ||= setTimeout(refresh, 150); };
  async function live(gen) {
    while (gen === generation) {
      try {
        await streamEvents(`${path}/events`, (name, data) => {
          if (data && data.seq) lastSeq = data.seq;
          if (data && data.node_id && EVENT_STATUS[name]) graph?.setStatus(data.node_id, EVENT_STATUS[name]);
          soon();
        }, undefined, lastSeq);
      } catch { await sleep(2000); }
      await refresh();
      if (FINISHED.has(record.status)) return;
      await sleep(1000);
    }
  }
  function restart() { generation += 1; refresh(); live(generation); }

  update(record);
  live(generation);
  setInterval(() => { if (!FINISHED.has(record.status)) drawTimeline(record); }, 1000);
}
