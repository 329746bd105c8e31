// The run's timeline: one lane per node that started, in start order, on one shared time
// scale, so branches that ran at once overlap. A node's bar holds its attempts, the
// backoffs between them and its waits; an expanded loop's lane is followed by one lane
// per body node, spanning all of its items. Lanes are kept by key and changed in place.
import { h } from "./dom.js";
import { bodyOf, specAt } from "./graph.js";
import { countsText, FINISHED_RUN, RunState } from "./runstate.js";

const ms = (text) => (text ? Date.parse(text) : NaN);
const RESCALE_MS = 500;  // at most this often when a bar outgrows the scale

export function makeTimeline(container, { doc, expanded, onSelect }) {
  const lanes = new Map();  // key -> {row, bar}
  const types = new Map((doc?.nodes || []).map((n) => [n.id, n.type]));
  let run = null, t0 = 0, t1 = 1, rescaleAt = 0, rescaleTimer = null;
  const axis = h("div.lane.axis", { "aria-hidden": "true" });
  const live = () => run && !FINISHED_RUN.has(run.record.status);

  // Start and end of a lane, in ms (end is now while it goes).
  function span(key) {
    if (key.includes("[*]")) {
      const g = run.groups.get(key);
      if (!g || !g.start) return null;
      const going = ["running", "retrying", "waiting"].some((s) => g.counts[s] > 0);
      return [g.start, going && live() ? Date.now() : Math.max(g.end || g.start, g.start)];
    }
    const s = run.states.get(key);
    const start = ms(s?.started_at);
    if (!s || Number.isNaN(start)) return null;
    const end = ms(s.finished_at);
    const to = Number.isNaN(end) ? (live() ? Date.now() : start) : end;
    // A retried node's record times its last attempt; its bar starts with the first.
    const first = run.segments.get(key)?.[0]?.start;
    return [first < start ? first : start, to];
  }

  // Which lanes, in order: top nodes by start, each expanded loop followed by its body.
  function keys() {
    const top = [];
    for (const [path, s] of run.states) if (!path.includes("[") && s.started_at) top.push(path);
    top.sort((a, b) => ms(run.states.get(a).started_at) - ms(run.states.get(b).started_at));
    const out = [];
    const add = (key) => {
      out.push(key);
      if (!expanded.has(key)) return;
      for (const n of bodyOf(specAt(doc, key) || {})?.nodes || []) {
        const inner = `${key}[*].${n.id}`;
        if (run.groups.get(inner)?.start) add(inner);
      }
    };
    top.forEach(add);
    return out;
  }

  function scale(list) {
    let lo = Infinity, hi = -Infinity;
    for (const key of list) {
      const s = span(key);
      if (s) { lo = Math.min(lo, s[0]); hi = Math.max(hi, s[1]); }
    }
    t0 = lo; t1 = Math.max(hi, lo + 1);
    if (live()) t1 += (t1 - t0) * 0.1;  // room to grow before the next rescale
    axis.replaceChildren(h("span"), h("div.scale", {}, h("span", {}, "0"),
      h("span", {}, `${((t1 - t0) / 1000).toFixed(t1 - t0 < 10000 ? 2 : 0)} s`)));
  }

  const pct = (t) => ((t - t0) / (t1 - t0)) * 100;

  function newLane(key) {
    const inner = key.includes("[*]");
    const type = inner ? specAt(doc, key)?.type : types.get(key);
    const bar = h("button.bar", { type: "button", "data-node-id": key, "data-type": type,
                                  onclick: () => onSelect(key) });
    const name = inner ? key.replace(/\[\*\]\./g, " › ") : key;
    const row = h(`div.lane${inner ? ".inner" : ""}`, { "data-node-id": key },
      h("span.name", { title: key }, name), h("div.track", {}, bar));
    const lane = { row, bar };
    lanes.set(key, lane);
    return lane;
  }

  function paint(key) {
    const lane = lanes.get(key);
    const s = span(key);
    if (!lane || !s) return;
    const [start, end] = s;
    if (end > t1 || start < t0) scheduleRescale();
    const left = pct(start), width = Math.max(0.5, pct(end) - left);
    const { bar } = lane;
    bar.style.left = `min(${left}%, calc(100% - 6px))`;  // a short bar at the end stays inside
    bar.style.width = `${Math.min(width, 100 - left)}%`;
    let status, label, aria;
    if (key.includes("[*]")) {
      const g = run.groups.get(key);
      status = RunState.groupStatus(g.counts);
      label = countsText(g.counts);
      aria = `${key}: ${label}`;
      bar.replaceChildren(width >= 8 ? label : "");
    } else {
      const st = run.states.get(key);
      status = st.status;
      const tries = st.attempts > 1 ? ` ×${st.attempts}` : "";
      label = `${status}${tries}`;
      aria = `${key}: ${status}, ${st.attempts} attempt${st.attempts === 1 ? "" : "s"}, ${latency(st)}`;
      bar.replaceChildren(...segments(key, start, end), width >= 8 ? h("span.label", {}, label) : "");
      bar.dataset.attempts = st.attempts;
    }
    bar.dataset.status = status;
    bar.setAttribute("aria-label", aria);
  }

  // Attempts, backoffs and waits inside a bar, when there is more than one run piece.
  function segments(key, start, end) {
    const list = run.segments.get(key);
    if (!list || (list.length === 1 && list[0].kind === "run")) return [];
    const whole = Math.max(1, end - start);
    return list.map((seg) => {
      const stop = seg.end ?? (seg.kind === "backoff" ? Math.min(seg.until, end) : end);
      const piece = h("span.seg", { "data-kind": seg.kind, "data-status": seg.status,
        title: `${seg.kind === "run" ? `attempt ${seg.attempt}` : seg.kind}: ${Math.round(stop - seg.start)} ms` });
      piece.style.left = `${((seg.start - start) / whole) * 100}%`;
      piece.style.width = `${Math.max(0.5, ((stop - seg.start) / whole) * 100)}%`;
      return piece;
    });
  }

  function scheduleRescale() {
    if (rescaleTimer) return;
    rescaleTimer = setTimeout(() => { rescaleTimer = null; rescaleAt = Date.now(); draw(run); },
                              Math.max(0, rescaleAt + RESCALE_MS - Date.now()));
  }

  // Everything again: lanes in order and on a new scale.
  function draw(state) {
    run = state;
    const list = keys();
    if (!list.length) {
      lanes.clear();
      container.replaceChildren(h("p.muted", {}, "No node has started yet."));
      return;
    }
    scale(list);
    const rows = list.map((key) => (lanes.get(key) || newLane(key)).row);
    const shown = new Set(list);
    for (const key of [...lanes.keys()]) if (!shown.has(key)) lanes.delete(key);
    list.forEach(paint);
    container.replaceChildren(...rows, axis);
  }

  // Only `changed` keys; a lane that starts now goes at the end (start order).
  function update(state, changed) {
    run = state;
    if (!lanes.size) { draw(state); return; }
    for (const key of changed) {
      if (lanes.has(key)) { paint(key); continue; }
      const shown = key.includes("[*]")
        ? expanded.has(key.slice(0, key.lastIndexOf("[*]"))) && lanes.has(key.slice(0, key.lastIndexOf("[*]")))
        : !key.includes("[") && run.states.get(key)?.started_at;
      if (!shown || !span(key)) continue;
      if (key.includes("[*]")) { scheduleRescale(); continue; }  // its place is under its loop
      container.insertBefore(newLane(key).row, axis);
      paint(key);
    }
  }

  // Once a second while the run goes: bars still going grow to now.
  function tick() {
    if (!live()) return;
    for (const [key, lane] of lanes) {
      if (["running", "retrying", "waiting"].includes(lane.bar.dataset.status)) paint(key);
    }
  }

  return { draw, update, tick };
}

export function latency(s) {
  if (s.latency_ms !== null && s.latency_ms !== undefined) return `${s.latency_ms.toFixed(1)} ms`;
  if (!s.started_at) return "—";
  const end = s.finished_at ? Date.parse(s.finished_at) : Date.now();
  const took = end - Date.parse(s.started_at);
  return took < 1000 ? `${Math.max(0, Math.round(took))} ms` : `${(took / 1000).toFixed(1)} s`;
}
