"""Stream figures the reports are built from: datagram header codec and the cn sink's statistics."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from cn.streams import StreamSink
from s2c.lab.steps.stream import check
from s2c.lab.traffic import HEADER_SIZE, StreamFormatError, pack, parse


def test_header_roundtrip_and_padding():
    data = pack("s1", 42, 1234.5, size=200)
    assert len(data) == 200
    h = parse(data)
    assert (h.stream, h.seq, h.sent_at) == ("s1", 42, 1234.5)
    assert len(pack("abc", 0, 0.0, size=1)) == HEADER_SIZE


@pytest.mark.parametrize("bad", ["", "x" * 17, "a\0b", "é"])
def test_bad_stream_ids_are_refused(bad):
    with pytest.raises(ValueError):
        pack(bad, 0, 0.0)


@pytest.mark.parametrize("data", [b"", b"S2CS", b"XXXX" + bytes(32), b"S2CS" + bytes(32)])
def test_malformed_datagrams(data):
    with pytest.raises(StreamFormatError):
        parse(data)


@given(st.binary(max_size=80))
def test_parse_never_raises_anything_but_its_error(data):
    try:
        parse(data)
    except StreamFormatError:
        pass


def _feed(sink, seqs, t0=100.0, dt=0.01, src="192.0.2.10", name="s"):
    t = t0
    for s in seqs:
        sink.receive(pack(name, s, t - 0.001), src, t)
        t += dt
    return t


def test_sink_counts_loss_reorder_duplicates_and_gap():
    sink = StreamSink()
    t = _feed(sink, [0, 1, 2, 4, 3, 3, 5])
    sink.receive(pack("s", 9, t), "192.0.2.10", t + 0.5)  # 6, 7, 8 lost, a 0.5 s silence
    s = sink.streams["s"].as_dict()
    assert s["received"] == 7  # 0..5 and 9
    assert s["duplicates"] == 1
    assert s["reordered"] == 1
    assert s["lost"] == 3
    assert s["max_gap"] == pytest.approx(0.51, abs=1e-6)
    assert s["delay_max"] >= 0.001


def test_sink_tracks_source_changes():
    sink = StreamSink()
    t = _feed(sink, range(5), src="192.0.2.10")
    _feed(sink, range(5, 10), t0=t, src="2001:db8:b::10")
    s = sink.streams["s"].as_dict()
    assert [c["to"] for c in s["source_changes"]] == ["192.0.2.10", "2001:db8:b::10"]
    assert s["source_changes"][1]["seq"] == 5
    assert s["sources"]["2001:db8:b::10"]["count"] == 5


def test_sink_drops_malformed_and_separates_streams():
    sink = StreamSink()
    assert sink.receive(b"garbage", "192.0.2.1", 1.0) is None
    _feed(sink, range(3), name="a")
    _feed(sink, range(4), name="b")
    assert sink.malformed == 1
    assert {k: v.received for k, v in sink.streams.items()} == {"a": 3, "b": 4}


def test_thresholds():
    stats = {"loss_pct": 30.0, "interruption": 0.8, "reordered": 2, "received": 70}
    assert check(stats, {}) == []
    problems = check(stats, {"max_loss": 10, "max_interruption": 0.5, "max_reordered": 0, "min_received": 100})
    assert len(problems) == 4
    assert "loss 30.0% > max_loss 10%" in problems[0]
    assert check(stats, {"max_loss": 40, "max_interruption": "1s", "min_interruption": "500ms"}) == []
