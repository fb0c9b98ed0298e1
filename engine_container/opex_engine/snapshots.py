"""Engine snapshots in MongoDB: chunked, checksummed, versioned.

A snapshot is the canonical JSON of the engine state in lines (``encode_state``):
a header line, one line per account, then the dedup log in lines of
``DEDUP_LINE`` entries. Loading parses it a line at a time, so the engine never
holds a parsed copy of the whole state next to the state itself: that copy
left a process a third larger (and its snapshot forks slower) than its state
needs. Payloads written before (one JSON document) still load. The payload is
zlib-compressed, split into chunks below MongoDB's 16 MB document limit, and
published by inserting its manifest *last*: a crash mid-write leaves chunks
without a manifest, which loading ignores. Loading verifies the checksum and
the version and falls back to the previous snapshot when one is corrupt or
incompatible. The newest ``KEEP`` snapshots are kept so that fallback is
possible; the input stream is trimmed only below the oldest of them.
"""

from __future__ import annotations

import hashlib
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
import pymongo
from pymongo.errors import PyMongoError

from .core.state import READABLE_VERSIONS, SNAPSHOT_VERSION, EngineState

log = logging.getLogger("opex.snapshots")

CHUNK = 8 * 1024 * 1024
KEEP = 3


@dataclass(frozen=True)
class SnapshotInfo:
    snap_id: str
    shard: int
    last_id: str
    created_ms: int
    size: int


DEDUP_LINE = 1000
LINES = "lines"  # the header's "format" in a line-oriented payload


def encode_state(state: EngineState) -> bytes:
    """The canonical bytes of a state (equal states <=> equal bytes)."""
    dumps, opt = orjson.dumps, orjson.OPT_SORT_KEYS
    accounts = state.account_lists()
    dedup = state.dedup_entries()
    slices = [dedup[i : i + DEDUP_LINE] for i in range(0, len(dedup), DEDUP_LINE)]
    head = {**state.snapshot_header(), "format": LINES, "accounts": len(accounts), "dedup_lines": len(slices)}
    return b"\n".join([dumps(head, option=opt), *(dumps(a, option=opt) for a in accounts),
                       *(dumps(d, option=opt) for d in slices)])


def decode_state(payload: bytes) -> EngineState:
    """The state of a payload from ``encode_state`` (or an older one-document payload)."""
    view = memoryview(payload)
    pos = 0

    def line() -> memoryview:
        nonlocal pos
        end = payload.find(b"\n", pos)
        if end < 0:
            end = len(payload)
        out, pos = view[pos:end], end + 1
        return out

    head = orjson.loads(line())
    if not isinstance(head, dict) or head.get("format") != LINES:
        return EngineState.from_snapshot(head)  # one JSON document (before the line format)
    state = EngineState.from_header(head)
    for _ in range(head["accounts"]):
        state.add_accounts([orjson.loads(line())])
    for _ in range(head["dedup_lines"]):
        state.add_dedup(orjson.loads(line()), head["v"])
    if pos < len(payload):
        raise ValueError("snapshot has bytes after its last line")
    return state


def stream_id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class SnapshotStore:
    def __init__(self, mongo_url: str, db_name: str, namespace: str, timeout_ms: int = 5000) -> None:
        """``namespace`` is the deployment's key prefix: deployments (and test
        runs) sharing a database never see each other's snapshots."""
        self.ns = namespace
        self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            mongo_url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
            socketTimeoutMS=max(timeout_ms, 30_000),
        )
        db = self.client[db_name]
        self.manifests = db["engine_snapshot_manifests"]
        self.chunks = db["engine_snapshot_chunks"]

    def close(self) -> None:
        self.client.close()

    # -- write ----------------------------------------------------------------
    def save(self, shard: int, last_id: str, payload: bytes) -> SnapshotInfo:
        """Store one snapshot (``payload`` = canonical state JSON) durably."""
        created = int(time.time() * 1000)
        snap_id = f"{self.ns}:{shard}:{last_id}:{created}"
        packed = zlib.compress(payload, 1)
        parts = [packed[i : i + CHUNK] for i in range(0, len(packed), CHUNK)] or [b""]
        self.chunks.insert_many(
            [{"_id": f"{snap_id}#{i}", "snap_id": snap_id, "i": i, "data": part} for i, part in enumerate(parts)]
        )
        self.manifests.insert_one({
            "_id": snap_id, "ns": self.ns, "shard": shard, "last_id": last_id,
            "last_ms": stream_id_key(last_id)[0], "last_seq": stream_id_key(last_id)[1],
            "created_ms": created, "chunks": len(parts), "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(), "version": SNAPSHOT_VERSION,
        })
        return SnapshotInfo(snap_id, shard, last_id, created, len(payload))

    def prune(self, shard: int, keep: int = KEEP) -> str | None:
        """Delete all but the newest ``keep`` snapshots; return the oldest kept
        snapshot's last stream id (the stream may be trimmed below it)."""
        docs = self._manifests(shard)
        for doc in docs[keep:]:
            self.manifests.delete_one({"_id": doc["_id"]})
            self.chunks.delete_many({"snap_id": doc["_id"]})
        kept = docs[:keep]
        # Trim only while an older snapshot backs up the newest: if the newest
        # turns out corrupt, the older one plus the stream rebuilds the state.
        return kept[-1]["last_id"] if len(kept) >= 2 else None

    # -- read -----------------------------------------------------------------
    def _manifests(self, shard: int) -> list[dict[str, Any]]:
        docs = list(self.manifests.find({"ns": self.ns, "shard": shard}))
        docs.sort(key=lambda d: (d.get("last_ms", 0), d.get("last_seq", 0), d.get("created_ms", 0)), reverse=True)
        return docs

    def load_latest(self, shard: int) -> tuple[EngineState, SnapshotInfo] | None:
        """The newest snapshot that verifies, or None. Corrupt or incompatible
        ones are refused with a log line and the next older one is tried."""
        for doc in self._manifests(shard):
            snap_id = doc["_id"]
            try:
                state = self._load_one(doc)
            except (ValueError, KeyError, TypeError, zlib.error, orjson.JSONDecodeError) as exc:
                log.error("snapshot refused; trying an older one", extra={"snapshot": snap_id, "reason": str(exc)})
                continue
            info = SnapshotInfo(snap_id, shard, doc["last_id"], doc["created_ms"], doc["size"])
            return state, info
        return None

    def _load_one(self, doc: dict[str, Any]) -> EngineState:
        if doc.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"incompatible snapshot version {doc.get('version')!r} (readable: {READABLE_VERSIONS})")
        parts = sorted(self.chunks.find({"snap_id": doc["_id"]}), key=lambda c: c["i"])
        if len(parts) != doc["chunks"]:
            raise ValueError(f"snapshot has {len(parts)} of {doc['chunks']} chunks")
        payload = zlib.decompress(b"".join(bytes(p["data"]) for p in parts))
        if hashlib.sha256(payload).hexdigest() != doc["sha256"]:
            raise ValueError("snapshot checksum mismatch")
        state = decode_state(payload)
        if state.last_id != doc["last_id"]:
            raise ValueError("snapshot last id does not match its manifest")
        return state


def safe_prune(store: SnapshotStore, shard: int) -> str | None:
    try:
        return store.prune(shard)
    except PyMongoError as exc:
        log.warning("snapshot prune failed", extra={"reason": str(exc)})
        return None
