"""LangGraph's checkpoint serializer with a fast path for `Send`.

A foreach writes one `Send` per item, twice (the task write and the chunk's checkpoint).
The stock encoder reaches `Send` last, after ~25 type checks ending in an `isinstance`
against a runtime-checkable Protocol, which alone costs more than the rest of encoding
the item. Here a `Send` is tested first and encoded to the very bytes the stock encoder
makes (so `loads_typed` and every existing checkpoint are unchanged); anything else goes
the stock way.
"""

from __future__ import annotations

from typing import Any

import ormsgpack
from langgraph.checkpoint.serde import jsonplus
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.types import Send

_SEND = (Send.__module__, Send.__name__)


def _default(obj: Any) -> Any:
    if type(obj) is Send:
        args: tuple[Any, ...] = (obj.node, obj.arg)
        if (timeout := getattr(obj, "timeout", None)) is not None:
            args = (obj.node, obj.arg, timeout)
        return ormsgpack.Ext(jsonplus.EXT_CONSTRUCTOR_POS_ARGS, _encode((*_SEND, args)))
    return jsonplus._msgpack_default(obj)


def _encode(value: Any) -> bytes:
    return ormsgpack.packb(value, default=_default, option=jsonplus._option)


class CheckpointSerializer(JsonPlusSerializer):
    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if obj is None or isinstance(obj, bytes | bytearray):
            return super().dumps_typed(obj)
        try:
            return "msgpack", _encode(obj)
        except ormsgpack.MsgpackEncodeError:
            return super().dumps_typed(obj)  # the stock path decides: pickle or raise
