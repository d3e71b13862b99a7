"""Subscriber store and AuC of the HSS (hss/store.py, hss/auc.py): TS 33.102 §6.3 and Annex C."""

from __future__ import annotations

import sqlite3
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hss import auc
from hss.store import (
    InvalidSubscriber,
    ResyncFailed,
    SubscriberExists,
    SubscriberStore,
    UnknownSubscriber,
    mask,
    subscriber_from_mapping,
)
from s2c.crypto import milenage

# TS 35.208 §4.3 test set 1
K = bytes.fromhex("465b5ce8b199b49faa5f0a2ee238a6bc")
OP = bytes.fromhex("cdc202d5123e20f62b6d676ac72cb318")
OPC = bytes.fromhex("cd63cb71954a9f4e48a5994e37a02baf")
IMSI = "001010000000001"


class CountingRng:
    """Deterministic rng for tests: distinct 16-byte RANDs."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, size: int) -> bytes:
        self.n += 1
        return self.n.to_bytes(size, "big")


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "hss.db")


@pytest.fixture
def store(db):
    s = SubscriberStore(db)
    yield s
    s.close()


def sub(imsi=IMSI, **kw):
    d = {"imsi": imsi, "k": K.hex(), "opc": OPC.hex(), "amf": "8000", "sqn": 0}
    d.update(kw)
    return d


# -- provisioning -------------------------------------------------------------------------------
def test_add_get_list_delete(store):
    s = store.add(sub(apn="internet", home_prefix_len=64, ipv4_hoa="203.0.113.10", static_hoa="2001:db8:1::10"))
    assert s.imsi == IMSI and s.k == K and s.opc == OPC and s.amf == b"\x80\x00" and s.sqn == 0
    assert s.apn == "internet" and s.home_prefix_len == 64
    assert s.ipv4_hoa == "203.0.113.10" and s.static_hoa == "2001:db8:1::10"
    assert s.created and s.updated
    store.add(sub("001010000000002"))
    assert [x.imsi for x in store.list()] == [IMSI, "001010000000002"]
    assert store.count() == 2
    store.delete(IMSI)
    with pytest.raises(UnknownSubscriber):
        store.get(IMSI)
    with pytest.raises(UnknownSubscriber):
        store.delete(IMSI)
    assert store.count() == 1


def test_duplicate_rejected_and_upsert_keeps_sqn(store):
    store.add(sub(sqn=100))
    with pytest.raises(SubscriberExists):
        store.add(sub())
    # Same K/OPc: SQN_HE never goes backwards on re-provisioning.
    assert store.upsert(sub(sqn=5, apn="ims")).sqn == 100
    assert store.get(IMSI).apn == "ims"
    assert store.upsert(sub(sqn=500)).sqn == 500


def test_scenario_model_hoa_semantics(store):
    """Scenario YAML: ipv4_hoa is a flag, static_hoa of either family (s2c/model/scenario.py)."""
    s = store.add(sub(ipv4_hoa=True, static_hoa="203.0.113.7"))
    assert s.ipv4_hoa == "203.0.113.7" and s.static_hoa is None
    s = store.add(sub("001010000000002", ipv4_hoa=False, static_hoa="2001:db8::7"))
    assert s.ipv4_hoa is None and s.static_hoa == "2001:db8::7"


def test_op_is_turned_into_opc(store):
    d = sub()
    del d["opc"]
    d["op"] = OP.hex()
    assert store.add(d).opc == OPC  # TS 35.208 test set 1


@pytest.mark.parametrize(
    "override, field",
    [
        ({"imsi": "12ab"}, "imsi"),
        ({"imsi": "1234567890123456"}, "imsi"),
        ({"k": "00"}, "k"),
        ({"k": "zz" * 16}, "k"),
        ({"opc": None}, "opc"),
        ({"op": OP.hex()}, "opc"),  # both opc and op
        ({"amf": "800"}, "amf"),
        ({"sqn": -1}, "sqn"),
        ({"sqn": 1 << 48}, "sqn"),
        ({"sqn": "nope"}, "sqn"),
        ({"home_prefix_len": 129}, "home_prefix_len"),
        ({"ipv4_hoa": "2001:db8::1"}, "ipv4_hoa"),
        ({"static_hoa": "nope"}, "static_hoa"),
        ({"static_hoa": "203.0.113.1", "ipv4_hoa": "203.0.113.2"}, "static_hoa"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_validation_names_the_field(store, override, field):
    with pytest.raises(InvalidSubscriber) as err:
        store.add(sub(**override))
    assert err.value.field == field
    assert field in str(err.value)
    assert store.count() == 0


def test_import_yaml_list_and_scenario_shape(store, tmp_path):
    a = tmp_path / "subs.yaml"
    a.write_text(textwrap.dedent(f"""\
        - imsi: "{IMSI}"
          k: {K.hex()}
          op: {OP.hex()}
          sqn: 0x20
        - imsi: "001010000000002"
          k: {K.hex()}
          opc: {OPC.hex()}
          amf: "8000"
          apn: internet
          home_prefix_len: 64
        """))
    out = store.import_yaml(str(a))
    assert [s.imsi for s in out] == [IMSI, "001010000000002"]
    assert store.get(IMSI).opc == OPC and store.get(IMSI).sqn == 0x20
    with pytest.raises(SubscriberExists):
        store.import_yaml(str(a))
    b = tmp_path / "scenario.yaml"
    b.write_text(f"name: x\nsubscribers:\n  - {{imsi: '001010000000003', k: '{K.hex()}', opc: '{OPC.hex()}'}}\n")
    store.import_yaml(str(b))
    assert store.count() == 3


def test_import_yaml_is_all_or_nothing(store, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(f"- {{imsi: '{IMSI}', k: '{K.hex()}', opc: '{OPC.hex()}'}}\n- {{imsi: '0010100', k: 'abc', opc: '{OPC.hex()}'}}\n")
    with pytest.raises(InvalidSubscriber) as err:
        store.import_yaml(str(p))
    assert err.value.field == "subscribers[1].k"
    assert store.count() == 0


def test_mask_hides_secrets(store):
    pub = store.add(sub()).public()
    assert K.hex() not in str(pub) and OPC.hex() not in str(pub)
    assert pub["k"].startswith(K.hex()[:4]) and "*" in pub["k"]
    assert mask(b"\x01\x02") == "****"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["imsi", "k", "opc", "op", "amf", "sqn", "apn", "home_prefix_len", "ipv4_hoa", "static_hoa", "x"]),
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40), st.binary(max_size=20), st.lists(st.integers(), max_size=2)),
))
def test_validation_only_raises_invalid_subscriber(data):
    try:
        subscriber_from_mapping(data)
    except InvalidSubscriber:
        pass


# -- AuC: SQN and vectors ---------------------------------------------------------------------------
def check_vector(v, sqn):
    ref = milenage.generate_vector(K, OPC, v.rand, sqn.to_bytes(6, "big"), b"\x80\x00")
    assert (v.xres, v.ck, v.ik, v.autn) == (ref.xres, ref.ck, ref.ik, ref.autn)


def test_vector_matches_milenage_and_sqn_strictly_increases(store):
    store.add(sub())
    rng = CountingRng()
    seen = []
    for _ in range(70):  # more than 2^IND_BITS so IND wraps around
        v = store.next_vector(IMSI, rng)
        check_vector(v, v.sqn)
        seen.append(v.sqn)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert auc.split(seen[0]) == (1, 1)
    seqs = [auc.split(s)[0] for s in seen]
    assert seqs == list(range(1, 71))  # SEQ steps by one per vector (Annex C.3.2)
    assert [auc.split(s)[1] for s in seen[:33]] == [(i + 1) % 32 for i in range(33)]
    assert store.get(IMSI).sqn == seen[-1]
    assert "ck" not in repr(v).lower()


def test_unknown_subscriber_vector(store):
    with pytest.raises(UnknownSubscriber):
        store.next_vector("001019999999999", CountingRng())


@pytest.mark.parametrize("reserve", [1, 16])
def test_sqn_persisted_before_return(db, reserve):
    """A second store opened on the file after next_vector (a crash/restart) never re-issues an SQN."""
    a = SubscriberStore(db, sqn_reserve=reserve)
    a.add(sub())
    issued = [a.next_vector(IMSI, CountingRng()).sqn for _ in range(5)]
    # "crash": no close, a fresh connection reads what is on disk
    b = SubscriberStore(db, sqn_reserve=reserve)
    assert b.get(IMSI).sqn >= max(issued)
    later = [b.next_vector(IMSI, CountingRng()).sqn for _ in range(5)]
    assert min(later) > max(issued)
    # the first store continues from its reserved block; the two never overlap
    more = [a.next_vector(IMSI, CountingRng()).sqn for _ in range(40)]
    assert not set(more) & set(issued + later)
    b.close()
    a.close()


def test_reserve_batches_commits_and_refills_in_background(db):
    s = SubscriberStore(db, sqn_reserve=32)
    s.add(sub())
    before = s.commits
    sqns = []
    for _ in range(200):
        sqns.append(s.next_vector(IMSI, CountingRng()).sqn)
        # whatever was handed out is covered by what is on disk, refill finished or not
        with sqlite3.connect(db) as raw:
            assert raw.execute("SELECT sqn FROM subscribers").fetchone()[0] >= sqns[-1]
        s.flush()  # let the background refill land (the daemon does not wait)
    assert sqns == sorted(set(sqns))
    assert [auc.split(x)[0] for x in sqns] == list(range(1, 201))  # no gaps while nothing restarts
    assert s.commits - before <= 200 // 16 + 1
    assert s.refills >= 5  # most reservations came from the background thread
    s.close()


def test_concurrent_stores_never_share_an_sqn(db):
    """Two daemons (or a daemon and a crash-restarted one) on one file: disjoint SQNs."""
    import threading

    a = SubscriberStore(db, sqn_reserve=8)
    a.add(sub())
    b = SubscriberStore(db, sqn_reserve=8)
    out: dict[str, list[int]] = {"a": [], "b": []}

    def run(name, st):
        for _ in range(300):
            out[name].append(st.next_vector(IMSI, CountingRng()).sqn)

    ts = [threading.Thread(target=run, args=("a", a)), threading.Thread(target=run, args=("b", b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not set(out["a"]) & set(out["b"])
    assert out["a"] == sorted(out["a"]) and out["b"] == sorted(out["b"])
    a.flush()
    b.flush()
    assert SubscriberStore(db).get(IMSI).sqn >= max(out["a"] + out["b"])
    a.close()
    b.close()


def test_crash_between_commit_and_return_is_safe(db, monkeypatch):
    """If vector computation dies after the SQN commit, the SQN is burnt, never re-used."""
    s = SubscriberStore(db)
    s.add(sub())
    first = s.next_vector(IMSI, CountingRng()).sqn
    with pytest.raises(RuntimeError):
        s.next_vector(IMSI, lambda n: (_ for _ in ()).throw(RuntimeError("boom")))
    burnt = s.get(IMSI).sqn
    assert burnt > first
    assert s.next_vector(IMSI, CountingRng()).sqn > burnt
    s.close()


def test_resync_from_ue_ahead(store):
    store.add(sub())
    rng = CountingRng()
    v = store.next_vector(IMSI, rng)
    sqn_ms = auc.join(5000, 7)  # USIM has seen far more (e.g. another HSS)
    auts = milenage.build_auts(K, OPC, v.rand, sqn_ms.to_bytes(6, "big"))
    nv = store.resync(IMSI, v.rand, auts, rng)
    assert auc.split(nv.sqn)[0] == 5001
    check_vector(nv, nv.sqn)
    assert store.get(IMSI).sqn == nv.sqn
    # the USIM accepts it: MAC ok and SEQ greater than its highest SEQ_MS
    chk = milenage.check_autn(K, OPC, nv.rand, nv.autn)
    assert chk.mac_ok and int.from_bytes(chk.sqn, "big") > sqn_ms


def test_resync_ue_behind_keeps_he(store):
    store.add(sub(sqn=auc.join(100, 3)))
    rng = CountingRng()
    v = store.next_vector(IMSI, rng)
    auts = milenage.build_auts(K, OPC, v.rand, auc.join(50, 2).to_bytes(6, "big"))
    nv = store.resync(IMSI, v.rand, auts, rng)
    assert nv.sqn > v.sqn  # never re-issued, still acceptable to the USIM (SEQ 102 > 50)


def test_bad_auts_rejected_sqn_unchanged(store):
    store.add(sub())
    rng = CountingRng()
    v = store.next_vector(IMSI, rng)
    before = store.get(IMSI).sqn
    auts = bytearray(milenage.build_auts(K, OPC, v.rand, auc.join(9000, 1).to_bytes(6, "big")))
    auts[-1] ^= 1
    with pytest.raises(ResyncFailed):
        store.resync(IMSI, v.rand, bytes(auts), rng)
    other_k = bytes(16)
    with pytest.raises(ResyncFailed):
        store.resync(IMSI, v.rand, milenage.build_auts(other_k, OPC, v.rand, auc.join(9000, 1).to_bytes(6, "big")), rng)
    with pytest.raises(ResyncFailed):
        store.resync(IMSI, v.rand, b"\x00" * 13, rng)
    assert store.get(IMSI).sqn == before


def test_wal_and_synchronous_full(store):
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
