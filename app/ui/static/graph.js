// The workflow drawn as a small SVG: longest-path layers top to bottom, nodes ordered in
// each layer by the mean position of their parents (two sweeps), edges as curves.
const NS = "http://www.w3.org/2000/svg";
const W = 150, H = 46, GAP_X = 26, GAP_Y = 56, PAD = 16;

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

export function layout(doc) {
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
  const widest = Math.max(...layers.map((l) => l.length));
  const width = widest * (W + GAP_X) - GAP_X + 2 * PAD;
  const xy = new Map();
  layers.forEach((l, depth) => l.forEach((id, i) => {
    const x = width / 2 + (i - (l.length - 1) / 2) * (W + GAP_X) - W / 2;
    xy.set(id, { x, y: PAD + depth * (H + GAP_Y) });
  }));
  return { xy, edges, back, width, height: layers.length * (H + GAP_Y) - GAP_Y + 2 * PAD };
}

// `live`: false draws the document alone (no run states).
export function drawGraph(doc, onSelect, live = true) {
  const { xy, edges, back, width, height } = layout(doc);
  const root = svg("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, role: "group",
                            "aria-label": "Workflow graph" });
  root.setAttribute("width", width);  // natural size, shrunk to fit (max-width) but never blown up
  root.setAttribute("height", height);
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
                                 markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6e7781" }));
  defs.append(marker);
  root.append(defs);
  for (const e of edges) {
    const a = xy.get(e.source), b = xy.get(e.target);
    const x1 = a.x + W / 2, y1 = a.y + H, x2 = b.x + W / 2, y2 = b.y;
    const d = back.has(e)
      ? `M${a.x + W},${a.y + H / 2} C${a.x + W + 60},${a.y} ${b.x + W + 60},${b.y + H} ${b.x + W},${b.y + H / 2}`
      : `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2 - 2}`;
    root.append(svg("path", { class: "edge", d, "marker-end": "url(#arrow)",
                              "data-edge": `${e.source}->${e.target}` }));
    if (e.branch) {
      root.append(svg("text", { class: "edge-label", x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2 },
                      String(e.branch)));
    }
  }
  const groups = new Map();
  for (const n of doc.nodes) {
    const { x, y } = xy.get(n.id);
    const g = svg("g", { class: "node", tabindex: 0, role: "button", "data-node-id": n.id,
                         "data-status": "pending", transform: `translate(${x},${y})` });
    g.append(svg("rect", { width: W, height: H, rx: 8 }));
    const label = n.id.length > 18 ? `${n.id.slice(0, 17)}…` : n.id;
    g.append(svg("title", {}, n.id));
    g.append(svg("text", { x: 10, y: 19 }, label));
    g.append(svg("text", { class: "state", x: 10, y: 36 }, n.type));
    g.addEventListener("click", () => onSelect?.(n.id));
    g.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onSelect?.(n.id); }
    });
    groups.set(n.id, { g, type: n.type, live });
    setNode(groups.get(n.id), n.id, null);
  }
  root.append(...[...groups.values()].map((v) => v.g));
  return {
    element: root,
    setStates(states) {
      for (const [id, v] of groups) setNode(v, id, states[id] || null);
    },
    setStatus(id, status) {
      const v = groups.get(id);
      if (v) setNode(v, id, { status, attempts: Number(v.g.dataset.attempts) || 0 });
    },
    select(id) {
      for (const [nid, v] of groups) v.g.dataset.selected = String(nid === id);
    },
  };
}

function setNode(v, id, state) {
  const status = state?.status || "pending";
  const attempts = state?.attempts || 0;
  if (!v.live) { v.g.setAttribute("aria-label", `Node ${id} (${v.type})`); return; }
  v.g.dataset.status = status;
  v.g.dataset.attempts = attempts;
  const tries = attempts > 1 ? ` ×${attempts}` : "";
  v.g.querySelector(".state").textContent = `${v.type} · ${status}${tries}`;
  v.g.setAttribute("aria-label", `Node ${id} (${v.type}): ${status}${tries ? `, ${attempts} attempts` : ""}`);
}
