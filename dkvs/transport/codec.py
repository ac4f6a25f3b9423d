"""The wire format of node-to-node messages: compact JSON, one table per message type.

This is the only module that knows how a message looks in bytes. Entries travel as
``[epoch, seq, op, key, value]`` lists (plus ``cond`` for a compare-and-set) to keep batches small. Unknown or malformed input
raises :class:`CodecError`, which the receiving node answers with 400.

Binary values are held surrogate-escaped (:mod:`dkvs.core.values`): the JSON text is
written and read with ``surrogatepass``, so every byte value crosses unchanged.
"""

from __future__ import annotations

import json

from ..core.log import Entry
from ..core.membership import parse_member_rows
from ..core.messages import Append, AppendReply, Message, PeerView, Snapshot, TimeoutNow, VoteReply, VoteRequest

__all__ = ["encode", "decode", "encode_many", "decode_many", "CodecError",
           "encode_snapshot_chunks", "decode_snapshot", "encode_snapshot_answer", "decode_snapshot_answer"]


class CodecError(ValueError):
    """Bytes that are not a valid dkvs message."""


def _entries_out(entries) -> list:
    return [[e.epoch, e.seq, e.op, e.key, e.value] if e.cond is None
            else [e.epoch, e.seq, e.op, e.key, e.value, e.cond] for e in entries]


def _entries_in(rows) -> tuple[Entry, ...]:
    return tuple(Entry(int(r[0]), int(r[1]), str(r[2]), str(r[3]), r[4], int(r[5]) if len(r) > 5 else None)
                 for r in rows)


_ENCODERS = {
    Append: ("append", lambda m: {"ps": m.prev_seq, "pe": m.prev_epoch, "en": _entries_out(m.entries),
                                  "c": m.commit_seq, "r": m.round,
                                  "v": [[v.id, v.last_seq, v.alive] for v in m.view]}),
    AppendReply: ("append_reply", lambda m: {"ok": m.success, "m": m.match_seq, "hs": m.hint_seq,
                                             "he": m.hint_epoch, "r": m.round, "l": m.last_seq}),
    VoteRequest: ("vote", lambda m: {"ls": m.last_seq, "le": m.last_epoch, "pre": m.pre_vote, "tr": m.transfer}),
    VoteReply: ("vote_reply", lambda m: {"ok": m.granted, "pre": m.pre_vote, "fr": m.fresher}),
    TimeoutNow: ("timeout_now", lambda m: {}),
}

_DECODERS = {
    "append": lambda d, e, s: Append(e, s, int(d["ps"]), int(d["pe"] or 0), _entries_in(d["en"]), int(d["c"]),
                                     int(d.get("r", 0)),
                                     tuple(PeerView(str(i), int(l), bool(a)) for i, l, a in d.get("v", ()))),
    "append_reply": lambda d, e, s: AppendReply(e, s, bool(d["ok"]), int(d["m"]), int(d.get("hs", 0)),
                                                int(d.get("he", 0)), int(d.get("r", 0)), int(d.get("l", 0))),
    "vote": lambda d, e, s: VoteRequest(e, s, int(d["ls"]), int(d["le"]), bool(d.get("pre", False)),
                                        bool(d.get("tr", False))),
    "vote_reply": lambda d, e, s: VoteReply(e, s, bool(d["ok"]), bool(d.get("pre", False)),
                                            bool(d.get("fr", False))),
    "timeout_now": lambda d, e, s: TimeoutNow(e, s),
}


def _to_dict(message: Message) -> dict:
    try:
        tag, fields = _ENCODERS[type(message)]
    except KeyError:
        raise CodecError(f"cannot encode {type(message).__name__}") from None
    body = fields(message)
    body["t"], body["e"], body["s"] = tag, message.epoch, message.sender
    return body


def _from_dict(body) -> Message:
    try:
        return _DECODERS[body["t"]](body, int(body["e"]), str(body["s"]))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CodecError(f"malformed message: {exc!r}") from None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass") if isinstance(data, (bytes, bytearray)) else data


def encode(message: Message) -> bytes:
    return json.dumps(_to_dict(message), separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def decode(data: bytes) -> Message:
    try:
        return _from_dict(json.loads(_text(data)))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None


def encode_many(messages) -> bytes:
    return json.dumps([_to_dict(m) for m in messages], separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


def decode_many(data: bytes) -> list[Message]:
    try:
        rows = json.loads(_text(data))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise CodecError("expected a list of messages")
    return [_from_dict(r) for r in rows]


SNAPSHOT_CHUNK_ITEMS = 2000


def encode_snapshot_chunks(snapshot: Snapshot) -> list[bytes]:
    """A snapshot as newline-separated JSON chunks: a header line, then item lines of
    ``SNAPSHOT_CHUNK_ITEMS`` items each, so neither side builds one giant JSON string."""
    header = {"t": "snapshot", "e": snapshot.epoch, "s": snapshot.sender, "seq": snapshot.seq,
              "se": snapshot.snap_epoch, "members": [list(m) for m in snapshot.members]}
    chunks = [json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"]
    items = snapshot.data or []
    for i in range(0, len(items), SNAPSHOT_CHUNK_ITEMS):
        chunks.append(json.dumps(items[i : i + SNAPSHOT_CHUNK_ITEMS], separators=(",", ":"),
                                 ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n")
    return chunks


def decode_snapshot(data: bytes) -> Snapshot:
    try:
        lines = data.split(b"\n")
        header = json.loads(lines[0])
        if header.get("t") != "snapshot":
            raise CodecError("not a snapshot")
        items: list = []
        for line in lines[1:]:
            if line.strip():
                items.extend(json.loads(_text(line)))
        return Snapshot(int(header["e"]), str(header["s"]), int(header["seq"]), int(header["se"]),
                        parse_member_rows(header["members"]), items)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"malformed snapshot: {exc!r}") from None


def encode_snapshot_answer(want: int | None = None, messages=()) -> bytes:
    """The receiver's answer to one streamed snapshot chunk (``/internal/snapshot``):
    ``{"want": offset}`` while it needs more (the offset it wants next), or
    ``{"done": true, "messages": [...]}`` once the snapshot was installed, with the node's
    answers to the sender (its ``AppendReply``)."""
    if want is not None:
        return json.dumps({"want": want}).encode()
    return json.dumps({"done": True, "messages": [_to_dict(m) for m in messages]},
                      separators=(",", ":"), ensure_ascii=False).encode()


def decode_snapshot_answer(data: bytes) -> tuple[int | None, list[Message]]:
    """``(wanted offset, [])`` or ``(None, messages)``; :class:`CodecError` if malformed."""
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CodecError("expected a JSON object")
    if body.get("done") is True and isinstance(body.get("messages"), list):
        return None, [_from_dict(row) for row in body["messages"]]
    want = body.get("want")
    if type(want) is not int or want < 0:
        raise CodecError(f"malformed snapshot answer {body!r:.200}")
    return want, []
