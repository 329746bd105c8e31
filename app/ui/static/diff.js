// What changed between two versions of a workflow: nodes and edges added and removed,
// and each changed value by its path (`config.url`, `config.body.nodes[fetch].retry`).
// Lists of objects with an `id` (nodes, also inside loop bodies) are matched by id, edges
// by source, target and branch; any other list is one value.
const SKIP = new Set(["version"]);  // the stored copy's own number, not content
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const edgeKey = (e) => `${e.source} → ${e.target}${e.branch !== undefined ? ` (${e.branch})` : ""}`;
const byId = (list) => Array.isArray(list) && list.length > 0 && list.every((x) => isObject(x) && typeof x.id === "string");

// [{path, kind: "added"|"removed"|"changed", before, after}]
export function changes(a, b, path = "", out = []) {
  if (same(a, b)) return out;
  if (isObject(a) && isObject(b)) {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!path && SKIP.has(k)) continue;
      const p = path ? `${path}.${k}` : k;
      if (!(k in a)) out.push({ path: p, kind: "added", after: b[k] });
      else if (!(k in b)) out.push({ path: p, kind: "removed", before: a[k] });
      else changes(a[k], b[k], p, out);
    }
  } else if (Array.isArray(a) && Array.isArray(b) && (byId(a) || !a.length) && (byId(b) || !b.length)) {
    const left = new Map(a.map((x) => [x.id, x])), right = new Map(b.map((x) => [x.id, x]));
    for (const [id, x] of left) {
      if (!right.has(id)) out.push({ path: `${path}[${id}]`, kind: "removed", before: x });
      else changes(x, right.get(id), `${path}[${id}]`, out);
    }
    for (const [id, x] of right) if (!left.has(id)) out.push({ path: `${path}[${id}]`, kind: "added", after: x });
  } else {
    out.push({ path, kind: "changed", before: a, after: b });
  }
  return out;
}

// The diff of two workflow documents, by nodes, edges and the rest.
export function diffWorkflows(a, b) {
  const nodesA = new Map((a.nodes || []).map((n) => [n.id, n]));
  const nodesB = new Map((b.nodes || []).map((n) => [n.id, n]));
  const edgesA = new Map((a.edges || []).map((e) => [edgeKey(e), e]));
  const edgesB = new Map((b.edges || []).map((e) => [edgeKey(e), e]));
  const rest = (d) => Object.fromEntries(Object.entries(d).filter(([k]) => k !== "nodes" && k !== "edges"));
  return {
    nodes: {
      added: [...nodesB.keys()].filter((id) => !nodesA.has(id)),
      removed: [...nodesA.keys()].filter((id) => !nodesB.has(id)),
      changed: [...nodesB.keys()].filter((id) => nodesA.has(id) && !same(nodesA.get(id), nodesB.get(id)))
        .map((id) => ({ id, changes: changes(nodesA.get(id), nodesB.get(id)) })),
    },
    edges: {
      added: [...edgesB.keys()].filter((k) => !edgesA.has(k)),
      removed: [...edgesA.keys()].filter((k) => !edgesB.has(k)),
      changed: [...edgesB.keys()].filter((k) => edgesA.has(k) && !same(edgesA.get(k), edgesB.get(k)))
        .map((id) => ({ id, changes: changes(edgesA.get(id), edgesB.get(id)) })),
    },
    workflow: changes(rest(a), rest(b)),
  };
}

export function isEmpty(d) {
  return !d.workflow.length && ["nodes", "edges"].every((k) =>
    !d[k].added.length && !d[k].removed.length && !d[k].changed.length);
}
