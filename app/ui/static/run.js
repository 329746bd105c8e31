import { api, streamEvents } from "./api.js";
import { approvalForm } from "./approval.js";
import { badge, duration, facts, fmtTime, h, json, problemText, sleep } from "./dom.js";
import { drawGraph } from "./graph.js";
import { drawPanel } from "./panel.js";
import { FINISHED_RUN, RunState } from "./runstate.js";
import { makeTimeline } from "./timeline.js";

const link = (id) => h("a", { href: `/ui/runs/${encodeURIComponent(id)}` }, id);
const PANEL_EVERY_MS = 250;  // a selected node that keeps changing is redrawn this often
const FRAME_BUDGET_MS = 8;  // events applied per animation frame, at most this long

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
  const run = new RunState(record);
  const expanded = new Set();
  let selected = null;
  const title = h("h1", {}, "Run ", h("span", { id: "run-id" }, id), " ", h("span", { id: "run-status" }));
  const header = h("section.card", { "aria-label": "Run summary", id: "run-header" });
  const say = h("p", { role: "status", id: "action-msg" });
  const cancel = h("button.danger", { type: "button", id: "btn-cancel", onclick: () => act("cancel") }, "Cancel run");
  const resume = h("button", { type: "button", id: "btn-resume", onclick: () => act("resume") }, "Resume");
  const rerun = h("button", { type: "button", id: "btn-rerun", onclick: () => act("rerun") }, "Re-run with same inputs");
  const approvals = h("section", { id: "approvals", "aria-label": "Waiting approvals" });
  const timelineBox = h("div.timeline", { id: "timeline" });
  const timeline = makeTimeline(timelineBox, { doc, expanded, onSelect: (key) => choose(key) });
  const graph = doc ? drawGraph(doc, (key) => choose(key), {
    expanded, onToggle: () => { graph.update(run); timeline.draw(run); } }) : null;
  const panel = h("aside.card", { id: "node-panel", "aria-label": "Node details", tabindex: "-1" },
    h("p.muted", {}, "Select a node in the graph or the timeline to see its details."));
  const io = h("div.grid2");
  const logs = h("div");
  const raw = h("pre", { id: "raw-json" });
  const rawBox = h("details.card", { ontoggle: () => { if (rawBox.open) raw.textContent = json(record); } },
    h("summary", {}, "Raw JSON (the record as last read)"), raw);
  const legend = h("div.legend", { "aria-hidden": "true" },
    ["pending", "running", "retrying", "waiting", "succeeded", "failed", "skipped", "cancelled"].map(badge));

  main.replaceChildren(title, header, h("div.actions", {}, cancel, resume, rerun), say, approvals,
    h("div.run-layout", {},
      h("div", {},
        h("section.card.contained", { "aria-labelledby": "graph-h" }, h("h2", { id: "graph-h" }, "Graph"), legend,
          graph ? graph.element : h("p.muted", {}, "The workflow document is not available.")),
        h("section.card.contained", { "aria-labelledby": "tl-h" }, h("h2", { id: "tl-h" }, "Timeline"),
          h("div.legend.tl-legend", { "aria-hidden": "true" }, h("span", { "data-kind": "run" }, "attempt"),
            h("span", { "data-kind": "backoff" }, "backoff before a retry"),
            h("span", { "data-kind": "wait" }, "waiting: a delay, an approval")), timelineBox),
        h("section.card", { "aria-label": "Inputs and output" }, io),
        h("section.card", { "aria-labelledby": "logs-h" }, h("h2", { id: "logs-h" }, "Logs and errors"), logs),
        rawBox),
      panel));

  // A record read from the server: everything is drawn again from it.
  function update(r) {
    record = r;
    run.load(r);
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
    cancel.disabled = FINISHED_RUN.has(r.status);
    resume.disabled = r.status !== "failed";
    rerun.disabled = !r.workflow_id;
    graph?.update(run);
    timeline.draw(run);
    drawApprovals(r);
    io.replaceChildren(h("div", {}, h("h2", {}, "Inputs"), h("pre", { id: "run-inputs" }, json(r.inputs))),
      h("div", {}, h("h2", {}, "Output"), h("pre", { id: "run-output" }, json(r.output))));
    drawLogs();
    if (rawBox.open) raw.textContent = json(r);
    if (selected) drawPanel(panel, run, doc, selected, choose);
  }

  function drawLogs() {
    logs.replaceChildren(
      ...record.errors.map((e) => h("p.error", {}, `${e.node_id ? `${e.node_id}: ` : ""}${e.type}: ${e.message}`)),
      run.logs.length ? h("pre", { id: "run-logs" }, run.logs.map((l) => `${l.at} ${l.level} ${l.node_id || "-"} ${l.message}`).join("\n"))
        : h("p.muted", {}, "No log lines."));
  }

  function idempotencyKeys(r) {
    const keys = Object.entries(r.node_states).filter(([, s]) => s.idempotency_key);
    return keys.length ? keys.map(([n, s]) => `${n}: ${s.idempotency_key}`).join(", ") : null;
  }

  let shownPrompts = "";
  function drawApprovals(r) {
    const key = JSON.stringify(r.waiting_for.map((p) => [p.node_id, p.interrupt_id]));
    if (key === shownPrompts) return; // keep what the user is typing
    shownPrompts = key;
    approvals.replaceChildren(...(r.waiting_for.length
      ? [h("h2", {}, "Waiting for an answer"), ...r.waiting_for.map((p) => approvalForm(id, p, restart))] : []));
  }

  let panelDrawn = 0, panelTimer = null;
  function redrawPanel() {  // at most every PANEL_EVERY_MS, and once after the last change
    if (panelTimer) return;
    panelTimer = setTimeout(() => {
      panelTimer = null;
      if (selected) drawPanel(panel, run, doc, selected, choose);
      panelDrawn = performance.now();
    }, Math.max(0, panelDrawn + PANEL_EVERY_MS - performance.now()));
  }
  function choose(key) {
    selected = key;
    graph?.select(key);
    drawPanel(panel, run, doc, key, choose);
    panelDrawn = performance.now();
    panel.focus();
  }

  async function act(what) {
    say.className = "";
    try {
      if (what === "rerun") {  // the version this run was pinned to, not the latest
        const started = await api(`/workflows/${encodeURIComponent(record.workflow_id)}/execute?version=${record.workflow_version}`,
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

  // Live: events are queued as they arrive and applied once per animation frame, so a
  // burst (a 10,000-item foreach, or the replay a late page gets) costs one redraw of
  // what it changed. The record is read again only when the run itself changes.
  const queue = [];
  let frame = 0, lastSeq = 0, generation = 0, pending = null;
  function onEvent(name, data) {
    if (!data || typeof data !== "object") return;
    if (data.seq) {
      if (data.seq <= lastSeq) return;  // already applied (a stream that started over)
      lastSeq = data.seq;
    }
    queue.push(data);
    frame ||= requestAnimationFrame(flush);
  }
  function flush() {
    frame = 0;
    // A frame applies events for at most FRAME_BUDGET_MS; the rest wait for the next one.
    const until = performance.now() + FRAME_BUDGET_MS;
    const changed = new Set();
    const logLines = run.logs.length;
    let news = false, taken = 0;
    while (taken < queue.length && (taken % 64 || performance.now() < until)) {
      const e = queue[taken++];
      const what = run.apply(e);
      if (what === "node") RunState.touched(e.node_id, changed);
      else if (what === "run") {
        news = true;
        if (e.event === "run.finished") title.querySelector("#run-status").replaceChildren(badge(e.status));
      }
    }
    queue.splice(0, taken);
    if (queue.length) frame = requestAnimationFrame(flush);
    if (changed.size) {
      graph?.update(run, changed);
      timeline.update(run, changed);
      if (selected && changed.has(selected)) redrawPanel();
    }
    if (run.logs.length !== logLines) drawLogs();
    if (news) soon();
  }
  // One read at a time: asked for during a read, it reads once more after that one (which
  // may have started before what it was asked for); a scheduled read is folded into it.
  let reading = null, again = false;
  function refresh() {
    clearTimeout(pending);
    pending = null;
    if (reading) { again = true; return reading; }
    reading = (async () => {
      do {
        again = false;
        try { update(await api(path)); } catch { /* the next event or poll tries again */ }
      } while (again);
      reading = null;
    })();
    return reading;
  }
  const soon = () => { pending ||= setTimeout(refresh, 150); };
  async function live(gen) {
    while (gen === generation) {
      try { await streamEvents(`${path}/events`, onEvent, undefined, lastSeq); } catch { await sleep(2000); }
      if (gen !== generation) return;
      if (!FINISHED_RUN.has(record.status)) await refresh();
      if (FINISHED_RUN.has(record.status)) return;
      await sleep(1000);
    }
  }
  function restart() { generation += 1; refresh(); live(generation); }

  update(record);
  live(generation);
  setInterval(() => timeline.tick(), 1000);
}
