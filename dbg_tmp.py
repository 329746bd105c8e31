import asyncio, tempfile
from pathlib import Path
from app.runner import execute_workflow_async, resume_workflow
from app.settings import load_settings
from app.stores.sqlite import SqliteStore
from tests.conftest import t
from graphs.errors import NodeError
from nodes.base import NodeConfig, NodeType
from nodes.registry import register_node_type
calls = {"n": 0}
class Once(NodeType):
    name = "once"
    async def run(self, config, ctx):
        calls["n"] += 1
        if calls["n"] == 1: raise NodeError("first time fails")
        return "ok"
register_node_type(Once())
async def main():
    d = Path(tempfile.mkdtemp()); s = load_settings(store=f"sqlite:///{d}/x.db"); store = SqliteStore(d / "x.db")
    doc = {"nodes": [t("a", 1), {"id": "c", "type": "once"}, t("d", 2)], "edges": [{"source": "a", "target": "c"}, {"source": "c", "target": "d"}]}
    r = await execute_workflow_async(doc, settings=s, store=store, execution_id="x")
    print(r.status, r.errors)
    r = await resume_workflow("x", settings=s, store=store)
    print(r.status, r.errors, {k: v.status for k, v in r.node_states.items()})
asyncio.run(main())
