"""The engine loop's own Redis wire helpers and heap helpers (no Redis needed
except where marked): the RESP packer against hiredis, the reply splice
against a parse-merge-serialize, XREADGROUP reply shapes, huge pages."""

from __future__ import annotations

import ctypes
import mmap

import hiredis
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opex_common import heap
from opex_common import messages as m
from opex_engine.runtime import _data_field, _entries, pack_commands, with_account

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.unit
@given(st.lists(st.lists(st.text(max_size=30) | st.binary(max_size=60) | st.integers(0, 2**62), min_size=1,
                         max_size=8), min_size=1, max_size=5))
def test_pack_is_the_redis_protocol_as_hiredis_writes_it(cmds):
    assert pack_commands([tuple(c) for c in cmds]) == b"".join(hiredis.pack_command(tuple(c)) for c in cmds)


@pytest.mark.unit
@given(data=st.dictionaries(st.text(max_size=10).filter(lambda k: k != "account"), json_values, max_size=5),
       view=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
       code=st.sampled_from([m.OK, m.INVALID, m.NOT_FOUND, m.REJECTED]),
       user=st.none() | st.text(max_size=10))
def test_with_account_equals_adding_the_view_to_data(data, view, code, user):
    rep = m.reply("cmd-1", code, "message", data, user_id=user)
    raw, view_json = orjson.dumps(rep), orjson.dumps(view)
    expected = {**rep, "data": {**rep["data"], "account": view}}
    assert orjson.loads(with_account(raw, view_json)) == expected


@pytest.mark.unit
def test_with_account_on_empty_data():
    raw = orjson.dumps(m.reply("c", m.OK, "ok"))
    assert orjson.loads(with_account(raw, b'{"balance":1}'))["data"] == {"account": {"balance": 1}}


@pytest.mark.unit
def test_xreadgroup_reply_shapes():
    entries = [[b"1-0", [b"d", b"{}"]], [b"1-1", [b"x", b"y", b"d", b"[]"]]]
    assert _entries(None) == [] and _entries({}) == [] and _entries([]) == []
    assert _entries({b"s": entries}) == entries  # RESP3
    assert _entries([[b"s", entries]]) == entries  # RESP2
    assert _data_field(entries[0][1]) == b"{}"
    assert _data_field(entries[1][1]) == b"[]"
    assert _data_field([b"x", b"y"]) is None
    assert _data_field(None) is None  # an entry deleted under the group
    assert _data_field([b"d"]) is None  # odd length: no value


@pytest.mark.unit
def test_hold_freed_memory_sets_glibc_options():
    assert heap.hold_freed_memory() is True  # this machine's libc is glibc


def _anon_huge_kb() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))


@pytest.mark.unit
def test_collapse_to_huge_pages_backs_a_dense_heap_with_huge_pages():
    size = 64 << 20
    # private anonymous memory, as the heap's: written page by page (4 KiB pages)
    mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for off in range(0, size, 4096):
        mem[off] = off >> 12 & 0xFF
    before = _anon_huge_kb()
    done = heap.collapse_to_huge_pages()
    if done is None:
        pytest.skip("this kernel has no MADV_COLLAPSE")
    assert done >= size - (2 << 20)
    assert _anon_huge_kb() - before >= (size >> 10) - 4096, "the mapping was not moved to huge pages"
    assert all(mem[off] == off >> 12 & 0xFF for off in range(0, size, 4096))  # the data survived the move
    mem.close()


@pytest.mark.unit
def test_collapse_without_madvise_reports_unavailable(monkeypatch):
    class NoMadvise:
        def __init__(self, *_a, **_k):
            pass

    monkeypatch.setattr(ctypes, "CDLL", NoMadvise)
    assert heap.collapse_to_huge_pages() is None
    assert heap.hold_freed_memory() is False
