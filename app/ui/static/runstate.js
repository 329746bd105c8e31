// A run's node states as the page knows them: the record's, moved on by the run's events
// (the same folding as app/records.py RecordBuilder), plus what the record does not keep:
// each node's attempts, backoffs and waits (`segments`), and, for loop bodies, counts per
// body node over every item (`groups`) and items seen and failed per loop (`loops`).
// Paths: `each[3].fetch` is body node `fetch` of item 3 of loop `each`; its group key is
// `each[*].fetch`, and the loop's key is `each` (`outer[*].inner` for a nested loop).

export const FINISHED_RUN = new Set(["succeeded", "failed", "cancelled"]);
const DONE = new Set(["succeeded", "failed", "skipped", "cancelled"]);
const iso = (at) => (at === undefined || at === null ? null : new Date(at * 1000).toISOString());
const ms = (text) => (text ? Date.parse(text) : NaN);

export const groupKey = (path) => path.replace(/\[\d+\]/g, "[*]");
export const topId = (path) => { const i = path.indexOf("["); return i < 0 ? path : path.slice(0, i); };
export const isGroupKey = (key) => key.includes("[*]");

// ["each[3]", "each"], ["each[3].inner[1]", "each[*].inner"], ... for each loop around `path`.
function itemsAround(path) {
  const out = [];
  const re = /\[(\d+)\]/g;
  for (let m; (m = re.exec(path));) {
    const end = m.index + m[0].length;
    out.push([path.slice(0, end), groupKey(path.slice(0, m.index))]);
  }
  return out;
}

export class RunState {
  constructor(record) {
    this.states = new Map();    // path -> node state (the record's shape)
    this.segments = new Map();  // path -> [{kind: run|backoff|wait, start, end, status, attempt}]
    this.groups = new Map();    // group key -> {counts: {status: n}, start, end}
    this.loops = new Map();     // loop key -> {items: Set of item paths, failed: Map item -> n}
    this.totals = new Map();    // loop key -> items of its foreach runs (each run's `items_total`)
    this.totalOf = new Map();   // path -> the `items_total` counted in `totals` for it
    this.logs = [];
    this.fromEvents = new Set();  // paths an event has set: newer than a live record
    this.load(record);
  }

  // A record read from the server. While the run goes, states set by events are kept (a
  // live record is written less often than its events); a finished record is the truth.
  load(record) {
    this.record = record;
    this.final = FINISHED_RUN.has(record.status);
    this.finalAt = ms(record.finished_at) || 0;
    this.logs = record.logs.map((l) => ({ ...l }));
    this.logsUntil = this.logs.length ? ms(this.logs[this.logs.length - 1].at) || 0 : 0;
    const keep = this.final ? new Set() : this.fromEvents;
    for (const [path, state] of Object.entries(record.node_states)) {
      if (!keep.has(path)) this.set(path, { ...state });
    }
    if (this.final) this.fromEvents.clear();
  }

  set(path, state) {
    const before = this.states.get(path);
    this.states.set(path, state);
    const total = state.items_total ?? null;
    if (total !== null && total !== this.totalOf.get(path)) {  // a foreach knows its items
      const key = groupKey(path);
      this.totals.set(key, (this.totals.get(key) || 0) + total - (this.totalOf.get(path) || 0));
      this.totalOf.set(path, total);
    }
    if (!path.includes("[")) return;
    const g = this.groups.get(groupKey(path)) || this.newGroup(groupKey(path));
    if (before) g.counts[before.status] -= 1;
    g.counts[state.status] = (g.counts[state.status] || 0) + 1;
    const start = ms(state.started_at), end = ms(state.finished_at);
    if (start < g.start || (!g.start && start)) g.start = start;  // NaN compares false
    if (end > g.end || (!g.end && end)) g.end = end;
    const failedNow = state.status === "failed", failedBefore = before?.status === "failed";
    for (const [item, loop] of itemsAround(path)) {
      const l = this.loops.get(loop) || this.newLoop(loop);
      l.items.add(item);
      if (failedNow !== failedBefore) {
        const n = (l.failed.get(item) || 0) + (failedNow ? 1 : -1);
        if (n > 0) l.failed.set(item, n); else l.failed.delete(item);
      }
    }
  }

  newGroup(key) { const g = { counts: {}, start: 0, end: 0 }; this.groups.set(key, g); return g; }
  newLoop(key) { const l = { items: new Set(), failed: new Map() }; this.loops.set(key, l); return l; }

  // What to redraw when `path` changed: its top node, its group and the loops around it.
  static touched(path, into) {
    into.add(topId(path));
    if (path.includes("[")) {
      into.add(groupKey(path));
      for (const [, loop] of itemsAround(path)) into.add(loop);
    }
    return into;
  }

  // One event from the stream. Returns "run" for a run-level event the record must be
  // read again for, "node" when a node changed, else "" (the caller sees new log lines).
  apply(e) {
    const kind = e.event;
    if (kind.startsWith("run.")) {  // news, unless the finished record already holds it
      const held = kind === "run.finished" ? e.status === this.record.status : e.at * 1000 <= this.finalAt;
      return this.final && held ? "" : "run";
    }
    // Events the finished record already holds only add their attempts and waits.
    const history = this.final && (e.at || 0) * 1000 <= this.finalAt;
    // The record's logs hold it already (its times are whole milliseconds when parsed).
    const logged = Math.floor((e.at || 0) * 1000) <= this.logsUntil;
    if (kind === "log") {
      if (!history && !logged) this.logs.push({ at: iso(e.at), node_id: e.node_id, level: e.level, message: e.message });
      return "";
    }
    const path = e.node_id;
    if (!path) return "";
    const changedSegments = this.segment(path, e);
    if (history) return changedSegments ? "node" : "";
    this.fromEvents.add(path);
    const state = this.states.get(path);
    if (kind === "node.started") {
      const attempts = e.attempt || 1;
      if (!state || DONE.has(state.status)) {
        this.set(path, { status: "running", attempts, started_at: iso(e.first_started_at ?? e.at),
          finished_at: null, output: null, error: null, items_total: e.items_total ?? null });
      } else this.set(path, { ...state, status: "running", attempts, items_total: e.items_total ?? state.items_total ?? null });
    } else if (kind === "node.retrying") {
      if (state) this.set(path, { ...state, status: "retrying" });
      if (!logged) this.logs.push({ at: iso(e.at), node_id: path, level: "warning", message: `retrying: ${e.reason}` });
    } else if (kind === "node.succeeded" || kind === "node.failed") {
      const meta = e.meta || {};
      const ok = kind === "node.succeeded";
      const error = meta.error || e.error || null;
      this.set(path, { status: ok ? "succeeded" : "failed",
        output: ok ? e.output : (e.handled ? { error } : null),
        attempts: meta.attempts ?? e.attempt ?? 1, cached: meta.cached ?? null,
        model: meta.model ?? null, usage: meta.usage ?? null,
        child_execution_id: meta.child_execution_id ?? null,
        idempotency_key: meta.idempotency_key ?? null, config: meta.config ?? null,
        items_total: meta.items ?? state?.items_total ?? null,
        started_at: iso(meta.started_at) || state?.started_at || null,
        finished_at: iso(meta.finished_at ?? e.at), latency_ms: meta.latency_ms ?? null, error });
      if (!ok && !logged) this.logs.push({ at: iso(e.at), node_id: path, level: e.handled ? "warning" : "error",
        message: error?.message || "failed" });
    } else if (kind === "node.waiting") {
      if (state) this.set(path, { ...state, status: "waiting" });
    } else if (kind === "node.skipped") {
      this.set(path, { status: "skipped", attempts: 0, finished_at: iso(e.at), started_at: null });
    } else if (kind === "node.cancelled") {
      if (state) this.set(path, { ...state, status: "cancelled", finished_at: iso(e.at) });
    }
    return "node";
  }

  // Attempts and waits, from events only. Returns whether they now say more than one bar
  // from start to finish does (a retry, a backoff or a wait).
  segment(path, e) {
    const list = this.segments.get(path) || [];
    const open = list.length && list[list.length - 1].end === null ? list[list.length - 1] : null;
    const close = (status, at) => { if (open) { open.end = at; if (status) open.status = status; } };
    const at = (e.at || 0) * 1000;
    switch (e.event) {
      case "node.started":
        close(null, at);
        list.push({ kind: "run", start: (e.first_started_at ?? e.at) * 1000, end: null,
                    status: "running", attempt: e.attempt || 1 });
        break;
      case "node.retrying":
        close("failed", at);
        list.push({ kind: "backoff", start: at, end: null, until: at + (e.delay_s || 0) * 1000,
                    status: "retrying", attempt: e.attempt });
        break;
      case "node.waiting":
        close("succeeded", at);
        list.push({ kind: "wait", start: at, end: null, status: "waiting" });
        break;
      case "node.succeeded": case "node.failed": case "node.cancelled":
        close(e.event.slice(5), ((e.meta && e.meta.finished_at) || e.at) * 1000);
        break;
      default:
        return false;
    }
    if (!this.segments.has(path)) this.segments.set(path, list);
    return list.length > 1 || (list.length === 1 && list[0].kind !== "run");
  }

  // Status shown for a group: what is going on first, then what went wrong, then the rest.
  static groupStatus(counts) {
    for (const s of ["running", "retrying", "waiting", "failed", "cancelled", "succeeded", "skipped"]) {
      if (counts[s] > 0) return s;
    }
    return "pending";
  }
}

const WORDS = { succeeded: "ok", running: "running", retrying: "retrying", waiting: "waiting",
  failed: "failed", skipped: "skipped", cancelled: "cancelled" };

// "3 running · 120 ok · 1 failed"
export function countsText(counts) {
  return ["running", "retrying", "waiting", "succeeded", "failed", "skipped", "cancelled"]
    .filter((s) => counts[s] > 0).map((s) => `${counts[s].toLocaleString("en")} ${WORDS[s]}`).join(" · ");
}

// "120 items · 1 failed" (foreach) or "3 iterations" (while); a foreach that has not
// started all of its items yet: "3/120 items" (started/total).
export function loopText(type, loop, total) {
  const n = loop ? loop.items.size : 0;
  const count = total !== undefined && total !== null && n < total
    ? `${n.toLocaleString("en")}/${total.toLocaleString("en")}` : n.toLocaleString("en");
  const what = type === "while" ? (n === 1 ? "iteration" : "iterations")
    : ((total ?? n) === 1 ? "item" : "items");
  const failed = loop?.failed.size;
  return `${count} ${what}${failed ? ` · ${failed.toLocaleString("en")} failed` : ""}`;
}
