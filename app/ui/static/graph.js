// The workflow drawn as a small SVG: longest-path layers top to bottom, nodes ordered in
// each layer by the mean position of their parents (two sweeps), edges as curves. A
// `foreach`/`while` node is one node with its item or iteration counts; expanded, it is
// a box holding its body, laid out the same way, each body node standing for all items.
import { countsText, loopText, RunState } from "./runstate.js";

const NS = "http://www.w3.org/2000/svg";
const W = 150, H = 46, H3 = 60, GAP_X = 26, GAP_Y = 56, PAD = 16, INSET = 12;
const LOOPS = new Set(["foreach", "while"]);

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

export const bodyOf = (node) => (LOOPS.has(node.type) && node.config?.body?.nodes ? node.config.body : null);

// The document node at a path or group key: `each[3].div` and `each[*].div` are node
// `div` of the body of `each`.
export function specAt(doc, path) {
  let nodes = doc?.nodes || [], found = null;
  for (const id of path.replace(/\[(\d+|\*)\]\./g, "\u0000").split("\u0000")) {
    found = nodes.find((n) => n.id === id);
    if (!found) return null;
    nodes = bodyOf(found)?.nodes || [];
  }
  return found;
}

// `size(id)` gives each node's {w, h}; a layer is as tall as its tallest node.
export function layout(doc, size = () => ({ w: W, h: H })) {
  const ids = doc.nodes.map((n) => n.id);
  const known = new Set(ids);
  const edges = (doc.edges || []).filter((e) => known.has(e.source) && known.has(e.target));
  const out = new Map(ids.map((id) => [id, []]));
  for (const e of edges) out.get(e.source).push(e);
  // Back edges (a loop drawn in the document) are left out of the layering.
  const back = new Set(), state = new Map();
  const visit = (id) => {
    state.set(id, 1);
    for (const e of out.get(id)) {
      if (state.get(e.target) === 1) back.add(e);
      else if (!state.has(e.target)) visit(e.target);
    }
    state.set(id, 2);
  };
  ids.forEach((id) => state.has(id) || visit(id));
  const forward = edges.filter((e) => !back.has(e));
  const layer = new Map(ids.map((id) => [id, 0]));
  for (let changed = true, rounds = 0; changed && rounds <= ids.length; rounds++) {
    changed = false;
    for (const e of forward) {
      if (layer.get(e.target) < layer.get(e.source) + 1) {
        layer.set(e.target, layer.get(e.source) + 1); changed = true;
      }
    }
  }
  const layers = [];
  ids.forEach((id) => (layers[layer.get(id)] ||= []).push(id));
  const pos = new Map();
  const place = () => layers.forEach((l) => l.forEach((id, i) => pos.set(id, i - (l.length - 1) / 2)));
  place();
  const parents = new Map(ids.map((id) => [id, []]));
  const children = new Map(ids.map((id) => [id, []]));
  forward.forEach((e) => { parents.get(e.target).push(e.source); children.get(e.source).push(e.target); });
  const mean = (xs, fallback) => (xs.length ? xs.reduce((a, x) => a + pos.get(x), 0) / xs.length : fallback);
  for (let sweep = 0; sweep < 2; sweep++) {
    for (const l of layers) l.sort((a, b) => mean(parents.get(a), pos.get(a)) - mean(parents.get(b), pos.get(b)));
    place();
    for (const l of [...layers].reverse()) l.sort((a, b) => mean(children.get(a), pos.get(a)) - mean(children.get(b), pos.get(b)));
    place();
  }
  const sizes = new Map(ids.map((id) => [id, size(id)]));
  const rowW = layers.map((l) => l.reduce((a, id) => a + sizes.get(id).w, 0) + GAP_X * (l.length - 1));
  const width = Math.max(...rowW) + 2 * PAD;
  const xy = new Map();
  let y = PAD;
  layers.forEach((l, depth) => {
    let x = (width - rowW[depth]) / 2;
    for (const id of l) { xy.set(id, { x, y, ...sizes.get(id) }); x += sizes.get(id).w + GAP_X; }
    y += Math.max(...l.map((id) => sizes.get(id).h)) + GAP_Y;
  });
  return { xy, edges, back, width, height: y - GAP_Y + PAD };
}

// `live`: false draws the document alone (no run states). `expanded`: the keys of the
// loops whose body is shown (`each`, `each[*].inner`), changed by their toggles, which
// then call `onToggle(key)`.
export function drawGraph(doc, onSelect, { live = true, expanded = new Set(), onToggle } = {}) {
  const holder = document.createElement("div");
  holder.className = "graph-holder";
  let groups = new Map(), selected = null, run = null;

  function render() {
    groups = new Map();
    const placed = place(doc, "", 0);
    const root = svg("svg", { class: "graph", viewBox: `0 0 ${placed.width} ${placed.height}`,
                              role: "group", "aria-label": "Workflow graph" });
    root.setAttribute("width", placed.width);  // natural size, shrunk to fit, never blown up
    root.setAttribute("height", placed.height);
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
                                   markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6e7781" }));
    defs.append(marker);
    root.append(defs, placed.g);
    holder.replaceChildren(root);
    if (run) for (const key of groups.keys()) paint(key);
    if (selected) groups.get(selected)?.g.setAttribute("data-selected", "true");
  }

  // Lays out `d` (the workflow or a loop's body) and draws it into a new <g>. `prefix`
  // turns a node id into its key: "" at the top, "each[*]." inside loop `each`.
  function place(d, prefix, depth) {
    const bodies = new Map();
    for (const n of d.nodes) {
      const key = prefix + n.id;
      if (bodyOf(n) && expanded.has(key) && depth < 5) bodies.set(n.id, place(bodyOf(n), `${key}[*].`, depth + 1));
    }
    const tall = (n) => (prefix || bodyOf(n) ? H3 : H);
    const byId = new Map(d.nodes.map((n) => [n.id, n]));
    const { xy, edges, back, width, height } = layout(d, (id) => {
      const b = bodies.get(id);
      return b ? { w: Math.max(W, b.width + 2 * INSET), h: H3 + b.height + INSET } : { w: W, h: tall(byId.get(id)) };
    });
    const g = svg("g");
    for (const e of edges) {
      const a = xy.get(e.source), b = xy.get(e.target);
      const x1 = a.x + a.w / 2, y1 = a.y + a.h, x2 = b.x + b.w / 2, y2 = b.y;
      const path = back.has(e)
        ? `M${a.x + a.w},${a.y + a.h / 2} C${a.x + a.w + 60},${a.y} ${b.x + b.w + 60},${b.y + b.h} ${b.x + b.w},${b.y + b.h / 2}`
        : `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2 - 2}`;
      g.append(svg("path", { class: "edge", d: path, "marker-end": "url(#arrow)",
                             "data-edge": `${prefix}${e.source}->${prefix}${e.target}` }));
      if (e.branch) g.append(svg("text", { class: "edge-label", x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2 }, String(e.branch)));
    }
    for (const n of d.nodes) {
      const key = prefix + n.id;
      const box = xy.get(n.id);
      const node = svg("g", { class: "node", tabindex: 0, role: "button", "data-node-id": key,
                              "data-status": "pending", transform: `translate(${box.x},${box.y})` });
      if (prefix) node.dataset.group = "true";
      node.append(svg("rect", { width: box.w, height: box.h, rx: 8 }), svg("title", {}, key));
      const label = n.id.length > 18 ? `${n.id.slice(0, 17)}…` : n.id;
      node.append(svg("text", { x: 10, y: 19 }, label));
      const state = svg("text", { class: "state", x: 10, y: 36 }, n.type);
      node.append(state);
      const counts = tall(n) === H3 ? svg("text", { class: "state counts", x: 10, y: 52 }) : null;
      if (counts) node.append(counts);
      const open = (ev) => { ev.stopPropagation(); onSelect?.(key); };  // not the loop around it
      node.addEventListener("click", open);
      node.addEventListener("keydown", (ev) => {
        if ((ev.key === "Enter" || ev.key === " ") && ev.target === node) { ev.preventDefault(); onSelect?.(key); }
      });
      if (bodyOf(n)) node.append(toggle(key, box, bodies.has(n.id), bodyOf(n).nodes.length));
      const b = bodies.get(n.id);
      if (b) {
        node.dataset.expanded = "true";
        b.g.setAttribute("transform", `translate(${(box.w - b.width) / 2},${H3 - 4})`);
        node.append(b.g);
      }
      g.append(node);
      groups.set(key, { g: node, type: n.type, state, counts, loop: Boolean(bodyOf(n)), group: Boolean(prefix) });
      setLabel(key, bodyOf(n)?.nodes.length);
    }
    return { g, width, height };
  }

  function toggle(key, box, open, size) {
    const t = svg("g", { class: "toggle", tabindex: 0, role: "button", "aria-expanded": String(open),
      "aria-label": `${open ? "Hide" : "Show"} the body of ${key} (${size} node${size === 1 ? "" : "s"})`,
      transform: `translate(${box.w - 30},6)` });
    t.append(svg("rect", { width: 24, height: 20, rx: 4 }), svg("text", { x: 7, y: 15 }, open ? "▾" : "▸"));
    const flip = (ev) => {
      ev.stopPropagation(); ev.preventDefault();
      if (!expanded.delete(key)) expanded.add(key);
      render();
      holder.querySelector(`g.node[data-node-id="${CSS.escape(key)}"] .toggle`)?.focus();
      onToggle?.(key);
    };
    t.addEventListener("click", flip);
    t.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") flip(ev); });
    return t;
  }

  function setLabel(key, size) {
    const v = groups.get(key);
    if (live) { paint(key); return; }
    if (v.counts) v.counts.textContent = v.loop ? `body: ${size} node${size === 1 ? "" : "s"}` : "";
    v.g.setAttribute("aria-label", `Node ${key} (${v.type})`);
  }

  // Colour and label one node from the run's state.
  function paint(key) {
    const v = groups.get(key);
    if (!v || !live) return;
    let status = "pending", tries = "", extra = "";
    if (v.group) {
      const grp = run?.groups.get(key);
      status = grp ? RunState.groupStatus(grp.counts) : "pending";
      extra = grp ? countsText(grp.counts) : "not run yet";
      if (v.loop) extra = `${loopText(v.type, run?.loops.get(key), run?.totals.get(key))}${grp ? ` · ${extra}` : ""}`;
    } else {
      const s = run?.states.get(key);
      status = s?.status || "pending";
      const attempts = s?.attempts || 0;
      tries = attempts > 1 ? ` ×${attempts}` : "";
      v.g.dataset.attempts = attempts;
      if (v.loop) extra = loopText(v.type, run?.loops.get(key), run?.totals.get(key));
    }
    v.g.dataset.status = status;
    v.state.textContent = `${v.type} · ${status}${tries}`;
    if (v.counts) v.counts.textContent = extra;
    v.g.setAttribute("aria-label", `Node ${key} (${v.type}): ${status}${tries ? `, ${tries.slice(2)} attempts` : ""}${extra ? `, ${extra}` : ""}`);
  }

  render();
  return {
    element: holder,
    redraw() { render(); },
    // `state`: a RunState; `keys`: what changed (all when absent).
    update(state, keys) {
      run = state;
      for (const key of keys || groups.keys()) if (groups.has(key)) paint(key);
    },
    select(key) {
      if (selected) groups.get(selected)?.g.removeAttribute("data-selected");
      selected = key;
      groups.get(key)?.g.setAttribute("data-selected", "true");
    },
    has: (key) => groups.has(key),
  };
}
