"""The wire format of node-to-node messages: compact JSON, one table per message type.

This is the only module that knows how a message looks in bytes. Entries travel as
``[epoch, seq, op, key, value]`` lists (plus ``cond`` for a compare-and-set) to keep batches small. Unknown or malformed input
raises :class:`CodecError`, which the receiving node answers with 400.

The replication stream's hot messages, :class:`Append` and :class:`AppendReply`, also have
a binary form (:func:`encode_binary`, :func:`encode_binary_many`; struct-packed fields,
length-prefixed strings): a master encodes a batch and decodes its answers two to four
times faster than with JSON, and that is CPU the master spends per write. :func:`decode`
and :func:`decode_many` take either form (a binary one starts with a byte JSON never
starts with), so a POST body or a stream frame decode the same way.

Binary values are held surrogate-escaped (:mod:`dkvs.core.values`): the JSON text is
written and read with ``surrogatepass``, so every byte value crosses unchanged.
"""

from __future__ import annotations

import json
import struct

from ..core.log import Entry
from ..core.membership import parse_member_rows
from ..core.messages import Append, AppendReply, Message, PeerView, Snapshot, TimeoutNow, VoteReply, VoteRequest

__all__ = ["encode", "decode", "encode_many", "decode_many", "CodecError", "encode_binary", "encode_binary_many",
           "is_binary_many",
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
    if data[:1] in _BINARY_DECODERS:
        return _decode_binary(data)
    try:
        return _from_dict(json.loads(_text(data)))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None


def encode_many(messages) -> bytes:
    return json.dumps([_to_dict(m) for m in messages], separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


def decode_many(data: bytes) -> list[Message]:
    if data[:1] == _MANY_TAG:
        return _decode_binary_many(data)
    try:
        rows = json.loads(_text(data))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise CodecError("expected a list of messages")
    return [_from_dict(r) for r in rows]


# -- the binary form of the stream's messages ------------------------------------------------------
_APPEND_TAG, _REPLY_TAG, _MANY_TAG = b"\xa1", b"\xa2", b"\xb0"
# tag, epoch, prev_seq, prev_epoch, commit_seq, round, sender bytes, view rows, entries
_APPEND = struct.Struct(">cQQQQQHHI")
_VIEW = struct.Struct(">HQ?")  # id bytes, last_seq, alive
_ENTRY = struct.Struct(">QQBBHI")  # epoch, seq, op bytes, flags, key bytes, value bytes
_COND = struct.Struct(">Q")
_NONE, _JSON_VALUE, _HAS_COND = 1, 2, 4  # entry flags
# tag, epoch, success, match_seq, hint_seq, hint_epoch, round, last_seq, sender bytes
_REPLY = struct.Struct(">cQ?QQQQQH")
_COUNT = struct.Struct(">I")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _append_binary(m: Append) -> bytes:
    sender = _bytes(m.sender)
    parts = [_APPEND.pack(_APPEND_TAG, m.epoch, m.prev_seq, m.prev_epoch, m.commit_seq, m.round, len(sender),
                          len(m.view), len(m.entries)), sender]
    for v in m.view:
        node = _bytes(v.id)
        parts += (_VIEW.pack(len(node), v.last_seq, v.alive), node)
    pack = _ENTRY.pack
    for e in m.entries:
        key, value, op = _bytes(e.key), e.value, e.op.encode()
        if value is None:
            flags, data = _NONE, b""
        elif type(value) is str:
            flags, data = 0, _bytes(value)
        else:
            flags, data = _JSON_VALUE, _bytes(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
        if e.cond is None:
            parts += (pack(e.epoch, e.seq, len(op), flags, len(key), len(data)), op, key, data)
        else:
            parts += (pack(e.epoch, e.seq, len(op), flags | _HAS_COND, len(key), len(data)), op, key, data,
                      _COND.pack(e.cond))
    return b"".join(parts)


def _append_from(data: bytes) -> Append:
    _, epoch, prev_seq, prev_epoch, commit, rnd, sender_len, views, count = _APPEND.unpack_from(data, 0)
    pos = _APPEND.size
    sender = data[pos:pos + sender_len].decode()
    pos += sender_len
    view = []
    for _ in range(views):
        id_len, last_seq, alive = _VIEW.unpack_from(data, pos)
        pos += _VIEW.size
        view.append(PeerView(data[pos:pos + id_len].decode(), last_seq, alive))
        pos += id_len
    entries = []
    unpack, size = _ENTRY.unpack_from, _ENTRY.size
    for _ in range(count):
        e_epoch, seq, op_len, flags, key_len, value_len = unpack(data, pos)
        pos += size
        op = data[pos:pos + op_len].decode()
        pos += op_len
        key = data[pos:pos + key_len].decode("utf-8", "surrogatepass")
        pos += key_len
        raw = data[pos:pos + value_len]
        if len(raw) != value_len:
            raise CodecError("truncated entry")
        pos += value_len
        value = None if flags & _NONE else json.loads(_text(raw)) if flags & _JSON_VALUE else \
            raw.decode("utf-8", "surrogatepass")
        cond = None
        if flags & _HAS_COND:
            cond = _COND.unpack_from(data, pos)[0]
            pos += _COND.size
        entries.append(Entry(e_epoch, seq, op, key, value, cond))
    if pos != len(data):
        raise CodecError(f"{len(data) - pos} bytes after the append")
    return Append(epoch, sender, prev_seq, prev_epoch, tuple(entries), commit, rnd, tuple(view))


def _reply_binary(m: AppendReply) -> bytes:
    sender = _bytes(m.sender)
    return _REPLY.pack(_REPLY_TAG, m.epoch, m.success, m.match_seq, m.hint_seq, m.hint_epoch, m.round, m.last_seq,
                       len(sender)) + sender


def _reply_from(data: bytes) -> AppendReply:
    _, epoch, ok, match, hint_seq, hint_epoch, rnd, last, sender_len = _REPLY.unpack_from(data, 0)
    if len(data) != _REPLY.size + sender_len:
        raise CodecError("an append reply of the wrong length")
    return AppendReply(epoch, data[_REPLY.size:].decode(), ok, match, hint_seq, hint_epoch, rnd, last)


_BINARY_ENCODERS = {Append: _append_binary, AppendReply: _reply_binary}
_BINARY_DECODERS = {_APPEND_TAG: _append_from, _REPLY_TAG: _reply_from}


def _decode_binary(data: bytes) -> Message:
    try:
        return _BINARY_DECODERS[data[:1]](bytes(data))
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError, KeyError, ValueError) as exc:
        raise CodecError(f"malformed binary message: {exc!r}") from None


def encode_binary(message: Message) -> bytes:
    """The binary form of an Append or AppendReply; JSON (:func:`encode`) for the others."""
    encoder = _BINARY_ENCODERS.get(type(message))
    return encoder(message) if encoder is not None else encode(message)


def encode_binary_many(messages) -> bytes:
    """A list of messages: a count, then each one length-prefixed, binary where it has a
    binary form (:func:`encode_binary`), JSON otherwise."""
    parts = [_MANY_TAG, _COUNT.pack(len(messages))]
    for message in messages:
        data = encode_binary(message)
        parts += (_COUNT.pack(len(data)), data)
    return b"".join(parts)


def is_binary_many(data: bytes) -> bool:
    """Whether ``data`` is :func:`encode_binary_many`'s form (else :func:`encode_many`'s JSON)."""
    return data[:1] == _MANY_TAG


def _decode_binary_many(data: bytes) -> list[Message]:
    try:
        (count,) = _COUNT.unpack_from(data, 1)
        pos, out = 1 + _COUNT.size, []
        for _ in range(count):
            (length,) = _COUNT.unpack_from(data, pos)
            pos += _COUNT.size
            item = data[pos:pos + length]
            if len(item) != length:
                raise CodecError("truncated message list")
            out.append(decode(item))
            pos += length
    except struct.error as exc:
        raise CodecError(f"malformed message list: {exc}") from None
    if pos != len(data):
        raise CodecError("bytes after the message list")
    return out


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
