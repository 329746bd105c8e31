"""Where a workflow forks into branches that can run apart.

LangGraph ends a superstep only when all of its tasks have finished, so nodes of two
branches that share a graph advance in lockstep: a slow node in one holds the next node of
the other. A branch compiled into its own subgraph runs as one task of its parent, at its
own pace, and is checkpointed on its own. This module finds those branches.

For each fork F (a node with several successors, or the start of a graph with several
entries) taken in topological order, its region is every node between F and its immediate
post-dominator J (where all of F's paths meet again; the end of the graph if they never
do). The region splits into branches: its weakly connected parts. A fork is split only when
no node of its region has an in-edge from outside the region and F. Branches nest: each is
split again when it is compiled.

When J fires on its first arrival (a `join` with `mode: any`), its successors must not wait
for the slower branches either, so they cannot be in another task of the same graph. The
branches and J's side (J and all that follows it) then form a `Race`: one task that runs
each branch as a subgraph and starts J's side, a subgraph too, once J can go ahead.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

_SOURCE, _SINK = "\x00source", "\x00sink"


@dataclass(frozen=True, slots=True)
class Branch:
    """A part of a graph compiled into its own subgraph."""

    name: str  # the LangGraph node that runs it: `<first node id>.branch`
    nodes: tuple[str, ...]  # in document order


@dataclass(frozen=True, slots=True)
class Race:
    """Branches that meet at a join firing on its first arrival, and the join's side."""

    name: str  # the LangGraph node that runs it: `<join id>.race`
    join: str
    parts: tuple[tuple[str, ...], ...]  # each branch, in document order
    tail: tuple[str, ...]  # the join and everything after it, in document order

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(n for part in (*self.parts, self.tail) for n in part)


def _topological(nodes: Sequence[str], succ: Mapping[str, list[str]]) -> list[str]:
    indegree = dict.fromkeys(nodes, 0)
    for n in nodes:
        for s in succ[n]:
            indegree[s] += 1
    ready = [n for n in nodes if indegree[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for s in succ[n]:
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    return order


def _post_dominators(order: list[str], succ: Mapping[str, list[str]]) -> dict[str, str]:
    """Immediate post-dominator of each node of a DAG with one sink (Cooper, Harvey and
    Kennedy's intersection, walked in reverse topological order)."""
    rank = {n: i for i, n in enumerate(order)}
    ipdom: dict[str, str] = {_SINK: _SINK}

    def meet(a: str, b: str) -> str:
        while a != b:
            while rank[a] < rank[b]:
                a = ipdom[a]
            while rank[b] < rank[a]:
                b = ipdom[b]
        return a

    for n in reversed(order[:-1]):
        found: str | None = None
        for s in succ[n]:
            found = s if found is None else meet(found, s)
        ipdom[n] = found or _SINK
    return ipdom


def find_branches(
    nodes: Sequence[str],
    edges: Iterable[tuple[str, str]],
    fires_early: Callable[[str], bool] = lambda node: False,
    must_split: Callable[[str], bool] = lambda node: False,
    holds: Callable[[str], bool] = lambda node: True,
) -> list[Branch | Race]:
    """The branches to compile apart among `nodes` (edges leaving `nodes` are ignored).

    `fires_early(j)`: j runs on its first arrival, so forks meeting at j become races.
    `must_split(n)`: a branch of n alone still needs a subgraph (it takes several steps).
    `holds(n)`: n can keep a step open (it awaits, pauses or loops); a fork whose region
    has no such node is left shared, as its steps end as soon as they start.
    A branch of one single-step node is left in place: it is one task either way.
    """
    inside = set(nodes)
    succ: dict[str, list[str]] = {n: [] for n in [_SOURCE, *nodes, _SINK]}
    pred: dict[str, list[str]] = {n: [] for n in succ}
    for a, b in edges:
        if a in inside and b in inside:
            succ[a].append(b)
            pred[b].append(a)
    for n in nodes:
        if not pred[n]:
            succ[_SOURCE].append(n)
            pred[n].append(_SOURCE)
        if not succ[n]:
            succ[n].append(_SINK)
            pred[_SINK].append(n)
    order = _topological([_SOURCE, *nodes, _SINK], succ)
    ipdom = _post_dominators(order, succ)
    position = {n: i for i, n in enumerate(nodes)}
    taken: set[str] = set()
    branches: list[Branch | Race] = []
    for fork in order[:-1]:
        if fork in taken or len(succ[fork]) < 2:
            continue
        join = ipdom[fork]
        region = _region(fork, join, succ)
        if not any(holds(n) for n in region):
            continue
        if any(p != fork and p not in region for n in region for p in pred[n]):
            continue  # entered from elsewhere too: this fork's branches are not apart
        parts = _connected(region, succ, pred)
        if join != _SINK and fires_early(join):
            race = _race(fork, join, parts, succ, pred, fires_early, position)
            if race is not None:
                taken.update(race.nodes)
                branches.append(race)
            continue
        if len(parts) < 2:
            continue
        for part in parts:
            ordered = tuple(sorted(part, key=position.__getitem__))
            taken.update(part)
            if len(ordered) > 1 or must_split(ordered[0]):
                branches.append(Branch(f"{ordered[0]}.branch", ordered))
    return branches


def _race(fork: str, join: str, parts: list[set[str]], succ: Mapping[str, list[str]],
          pred: Mapping[str, list[str]], fires_early: Callable[[str], bool],
          position: Mapping[str, int]) -> Race | None:
    """The race at `fork`, unless a node after the join also waits for something that
    may still be running outside it (then the fork stays shared)."""
    tail = _reachable([join], succ)
    # What ran before the fork has settled, unless a join on the way fired early.
    ancestors = _reachable(pred[fork], pred) | ({fork} - {_SOURCE})
    settled = set() if any(fires_early(n) for n in ancestors) else ancestors
    known = tail.union(*parts, {fork, _SOURCE}, settled)
    if any(p not in known for n in tail for p in pred[n]):
        return None
    by_position = position.__getitem__
    return Race(f"{join}.race", join,
                tuple(tuple(sorted(part, key=by_position)) for part in parts),
                tuple(sorted(tail, key=by_position)))


def _reachable(starts: Iterable[str], step: Mapping[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        n = stack.pop()
        if n in seen or n in (_SOURCE, _SINK):
            continue
        seen.add(n)
        stack.extend(step[n])
    return seen


def _region(fork: str, join: str, succ: Mapping[str, list[str]]) -> set[str]:
    region: set[str] = set()
    stack = [s for s in succ[fork] if s != join]
    while stack:
        n = stack.pop()
        if n in region or n in (join, _SINK):
            continue
        region.add(n)
        stack.extend(succ[n])
    return region


def _connected(region: Collection[str], succ: Mapping[str, list[str]],
               pred: Mapping[str, list[str]]) -> list[set[str]]:
    parts: list[set[str]] = []
    seen: set[str] = set()
    for start in sorted(region):
        if start in seen:
            continue
        part, stack = set(), [start]
        while stack:
            n = stack.pop()
            if n in part:
                continue
            part.add(n)
            stack.extend(m for m in (*succ[n], *pred[n]) if m in region)
        seen |= part
        parts.append(part)
    return parts
