"""Subscriber store of the HSS: SQLite rows of (IMSI, K, OPc, AMF, SQN, ...) and the AuC functions.

One table ``subscribers`` holds the long-term secrets and the HE sequence number ``SQN_HE`` of every
USIM. The AuC side (``next_vector``, ``resync``) follows TS 33.102 §6.3 and Annex C:

* ``next_vector`` takes a FRESH SQN (SEQ||IND, Annex C.3.2, via :mod:`hss.auc`) and persists it in the
  same ``BEGIN IMMEDIATE ... COMMIT`` transaction BEFORE the vector is computed and returned, so a
  crash or a restart never re-issues an SQN.
* ``sqn_reserve`` (default 1) > 1 persists a block of future SQNs ahead ("high watermark") in one
  commit and hands them out from memory; a restart resumes above the watermark (skipping the unused
  ones, well within the USIM's delta window of Annex C.2.1), so the guarantee holds with one fsync per
  block instead of one per vector. When half a block is used, a background thread commits the next
  watermark on its own connection, so callers (the daemon's event loop) rarely wait for an fsync.
* ``resync`` verifies MAC-S (f1* with AMF = 0000, §6.3.5), recovers SQN_MS = (SQN_MS xor AK*) xor AK*,
  sets SQN_HE from it (Annex C.3.4) atomically, then issues a fresh vector.

The database uses WAL mode and ``PRAGMA synchronous=FULL``: a commit is on disk when it returns.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

from hss import auc

Rng = Callable[[int], bytes]

SQN_MAX = (1 << 48) - 1
DEFAULT_AMF = bytes.fromhex("8000")
DEFAULT_DB = "./var/hss.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscribers (
    imsi            TEXT PRIMARY KEY,
    k               BLOB NOT NULL CHECK (length(k) = 16),
    opc             BLOB NOT NULL CHECK (length(opc) = 16),
    amf             BLOB NOT NULL CHECK (length(amf) = 2),
    sqn             INTEGER NOT NULL CHECK (sqn >= 0 AND sqn <= 281474976710655),
    apn             TEXT,
    home_prefix_len INTEGER,
    ipv4_hoa        TEXT,
    static_hoa      TEXT,
    created         TEXT NOT NULL,
    updated         TEXT NOT NULL
);
"""

_COLUMNS = ("imsi", "k", "opc", "amf", "sqn", "apn", "home_prefix_len", "ipv4_hoa", "static_hoa", "created", "updated")


# -- errors ------------------------------------------------------------------------------------------
class StoreError(Exception):
    """Base class of every subscriber-store error."""


class UnknownSubscriber(StoreError, KeyError):
    """No subscriber with this IMSI."""

    def __init__(self, imsi: str):
        super().__init__(imsi)
        self.imsi = imsi

    def __str__(self) -> str:
        return f"unknown subscriber {self.imsi}"


class SubscriberExists(StoreError):
    """A subscriber with this IMSI is already provisioned."""

    def __init__(self, imsi: str):
        super().__init__(f"subscriber {imsi} already exists")
        self.imsi = imsi


class InvalidSubscriber(StoreError, ValueError):
    """A subscriber field is malformed; ``field`` names it."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ResyncFailed(StoreError):
    """An AUTS failed verification (bad MAC-S or malformed); SQN_HE is unchanged (TS 33.102 §6.3.5)."""


# -- records -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subscriber:
    """One provisioned USIM (the HSS view of TS 33.102 §6.3 long-term data)."""

    imsi: str
    k: bytes
    opc: bytes
    amf: bytes
    sqn: int
    apn: str | None = None
    home_prefix_len: int | None = None
    ipv4_hoa: str | None = None
    static_hoa: str | None = None
    created: str = ""
    updated: str = ""

    def public(self) -> dict[str, Any]:
        """A printable/loggable view: K and OPc masked, never in full."""
        return {
            "imsi": self.imsi,
            "k": mask(self.k),
            "opc": mask(self.opc),
            "amf": self.amf.hex(),
            "sqn": self.sqn,
            "sqn_hex": f"{self.sqn:012x}",
            "apn": self.apn,
            "home_prefix_len": self.home_prefix_len,
            "ipv4_hoa": self.ipv4_hoa,
            "static_hoa": self.static_hoa,
            "created": self.created,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class Vector:
    """An authentication vector (RAND, XRES, CK, IK, AUTN) of TS 33.102 §6.3.2, with the SQN it used."""

    imsi: str
    rand: bytes
    xres: bytes
    ck: bytes
    ik: bytes
    autn: bytes
    sqn: int

    def __repr__(self) -> str:  # keys never end up in logs through repr()
        return f"Vector(imsi={self.imsi!r}, sqn={self.sqn:#014x}, rand={self.rand.hex()})"


def mask(secret: bytes) -> str:
    """Show the first and last 2 bytes of a secret only: ``4655****************************63bf``."""
    h = secret.hex()
    return h[:4] + "*" * (len(h) - 8) + h[-4:] if len(h) > 8 else "*" * len(h)


# -- validation ------------------------------------------------------------------------------------------
_IMSI = re.compile(r"^[0-9]{5,15}$")


def validate_imsi(value: Any) -> str:
    s = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if s is None or not _IMSI.match(s):
        raise InvalidSubscriber("imsi", f"must be 5 to 15 decimal digits, got {value!r}")
    return s


def _hex_field(name: str, value: Any, size: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise InvalidSubscriber(name, f"not hexadecimal: {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool) and name == "amf" and 0 <= value <= 0xFFFF:
        raw = value.to_bytes(2, "big")
    else:
        raise InvalidSubscriber(name, f"expected {size * 2} hex digits, got {type(value).__name__}")
    if len(raw) != size:
        raise InvalidSubscriber(name, f"expected {size * 2} hex digits ({size} bytes), got {len(raw) * 2}")
    return raw


def _sqn_field(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidSubscriber("sqn", "must be an integer or hex string")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            n = int(text, 16) if text.startswith("0x") or re.search("[a-f]", text) else int(text, 10)
        except ValueError:
            raise InvalidSubscriber("sqn", f"not a number: {value!r}") from None
    else:
        raise InvalidSubscriber("sqn", f"must be an integer or hex string, got {type(value).__name__}")
    if not 0 <= n <= SQN_MAX:
        raise InvalidSubscriber("sqn", f"must be in 0..2^48-1, got {n}")
    return n


def _opt_str(name: str, value: Any, max_len: int = 100) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise InvalidSubscriber(name, f"must be a string of at most {max_len} characters")
    return value


def _prefix_len(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidSubscriber("home_prefix_len", f"must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not 1 <= n <= 128:
        raise InvalidSubscriber("home_prefix_len", f"must be in 1..128, got {value!r}")
    return n


def _addr(name: str, value: Any, version: int) -> str | None:
    if value is None or value == "":
        return None
    try:
        addr = ipaddress.ip_address(str(value).split("/")[0])
    except ValueError:
        raise InvalidSubscriber(name, f"not an IP address: {value!r}") from None
    if addr.version != version:
        raise InvalidSubscriber(name, f"must be an IPv{version} address, got {value!r}")
    return str(addr)


_KNOWN_FIELDS = {"imsi", "k", "opc", "op", "amf", "sqn", "apn", "home_prefix_len", "ipv4_hoa", "static_hoa"}


def subscriber_from_mapping(data: Mapping[str, Any]) -> Subscriber:
    """Validate one ``subscribers:`` entry (imsi, k, opc|op, amf, sqn, apn, home_prefix_len, ipv4_hoa, static_hoa).

    Only OP given: OPc = E_K(OP) xor OP is derived here (TS 35.206 §4.1) and only OPc is stored.
    """
    if not isinstance(data, Mapping):
        raise InvalidSubscriber("subscriber", f"must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - _KNOWN_FIELDS)
    if unknown:
        raise InvalidSubscriber(unknown[0], f"unknown field (known: {', '.join(sorted(_KNOWN_FIELDS))})")
    if "imsi" not in data:
        raise InvalidSubscriber("imsi", "missing")
    imsi = validate_imsi(data["imsi"])
    if "k" not in data:
        raise InvalidSubscriber("k", "missing")
    k = _hex_field("k", data["k"], 16)
    has_opc, has_op = data.get("opc") not in (None, ""), data.get("op") not in (None, "")
    if has_opc and has_op:
        raise InvalidSubscriber("opc", "give either opc or op, not both")
    if has_opc:
        opc = _hex_field("opc", data["opc"], 16)
    elif has_op:
        opc = auc.derive_opc(k, _hex_field("op", data["op"], 16))
    else:
        raise InvalidSubscriber("opc", "missing (give opc, or op to derive it)")
    amf = _hex_field("amf", data["amf"], 2) if data.get("amf") not in (None, "") else DEFAULT_AMF
    sqn = _sqn_field(data["sqn"]) if data.get("sqn") not in (None, "") else 0
    # The scenario model's ``ipv4_hoa`` is a flag (PDN GW policy: give an IPv4 HoA) and its
    # ``static_hoa`` may be of either family; the store keeps addresses: ipv4_hoa (IPv4) and
    # static_hoa (IPv6). A flag is accepted and not stored; an IPv4 static_hoa lands in ipv4_hoa.
    raw_v4 = data.get("ipv4_hoa")
    ipv4_hoa = None if isinstance(raw_v4, bool) else _addr("ipv4_hoa", raw_v4, 4)
    raw_static = data.get("static_hoa")
    static_hoa = None
    if raw_static not in (None, ""):
        try:
            fam = ipaddress.ip_address(str(raw_static).split("/")[0]).version
        except ValueError:
            raise InvalidSubscriber("static_hoa", f"not an IP address: {raw_static!r}") from None
        if fam == 4:
            if ipv4_hoa is not None:
                raise InvalidSubscriber("static_hoa", "an IPv4 static_hoa conflicts with ipv4_hoa")
            ipv4_hoa = _addr("static_hoa", raw_static, 4)
        else:
            static_hoa = _addr("static_hoa", raw_static, 6)
    return Subscriber(
        imsi=imsi,
        k=k,
        opc=opc,
        amf=amf,
        sqn=sqn,
        apn=_opt_str("apn", data.get("apn")),
        home_prefix_len=_prefix_len(data.get("home_prefix_len")),
        ipv4_hoa=ipv4_hoa,
        static_hoa=static_hoa,
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# -- the store ------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Block:
    """SQNs reserved on disk up to ``watermark``, of which ``last`` was handed out last.

    ``pending`` is the watermark a background refill is committing (None when idle); ``left`` the
    number of SQNs still available in (last, watermark].
    """

    created: str
    watermark: int
    last: int
    left: int
    pending: int | None = None


class SubscriberStore:
    """SQLite-backed subscriber store and AuC (TS 33.102 §6.3, Annex C). Thread-safe (one lock)."""

    def __init__(self, path: str = DEFAULT_DB, *, sqn_reserve: int = 1):
        if sqn_reserve < 1:
            raise ValueError("sqn_reserve must be >= 1")
        self.path = path
        self.sqn_reserve = sqn_reserve
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (explicit transactions).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._lock = threading.RLock()
        self._blocks: dict[str, _Block] = {}
        self._blk_lock = threading.Lock()
        self._refiller: ThreadPoolExecutor | None = None
        self._writer: sqlite3.Connection | None = None
        self.commits = 0  # number of SQN-persisting transactions (bench/diagnostics)
        self.refills = 0  # of which committed by the background refiller
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self._refiller is not None:
            self._refiller.shutdown(wait=True)
            self._refiller = None
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __enter__(self) -> "SubscriberStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- provisioning ------------------------------------------------------------------------------
    def add(self, sub: Subscriber | Mapping[str, Any], *, replace: bool = False) -> Subscriber:
        """Provision one subscriber; ``SubscriberExists`` unless ``replace`` (upsert)."""
        if not isinstance(sub, Subscriber):
            sub = subscriber_from_mapping(sub)
        now = _now()
        with self._lock:
            self._begin()
            try:
                row = self._db.execute("SELECT created FROM subscribers WHERE imsi=?", (sub.imsi,)).fetchone()
                if row is not None and not replace:
                    raise SubscriberExists(sub.imsi)
                created = row[0] if row is not None else now
                if row is not None:
                    self._db.execute("DELETE FROM subscribers WHERE imsi=?", (sub.imsi,))
                self._db.execute(
                    f"INSERT INTO subscribers ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                    (sub.imsi, sub.k, sub.opc, sub.amf, sub.sqn, sub.apn, sub.home_prefix_len,
                     sub.ipv4_hoa, sub.static_hoa, created, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            with self._blk_lock:
                self._blocks.pop(sub.imsi, None)
        return self.get(sub.imsi)

    def upsert(self, sub: Subscriber | Mapping[str, Any]) -> Subscriber:
        """Provision or update one subscriber, never moving its SQN_HE backwards (a restart with
        the same ``subscribers:`` list keeps the SQNs already issued)."""
        if not isinstance(sub, Subscriber):
            sub = subscriber_from_mapping(sub)
        with self._lock:
            try:
                old = self.get(sub.imsi)
            except UnknownSubscriber:
                return self.add(sub)
            if old.k == sub.k and old.opc == sub.opc:
                sub = Subscriber(**{**sub.__dict__, "sqn": max(old.sqn, sub.sqn)})
            return self.add(sub, replace=True)

    def get(self, imsi: str) -> Subscriber:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM subscribers WHERE imsi=?", (str(imsi),)
            ).fetchone()
        if row is None:
            raise UnknownSubscriber(str(imsi))
        return Subscriber(*row)

    def list(self) -> list[Subscriber]:
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM subscribers ORDER BY imsi").fetchall()
        return [Subscriber(*r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM subscribers").fetchone()[0])

    def delete(self, imsi: str) -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM subscribers WHERE imsi=?", (str(imsi),))
            with self._blk_lock:
                self._blocks.pop(str(imsi), None)
        if cur.rowcount == 0:
            raise UnknownSubscriber(str(imsi))

    def import_entries(self, entries: Iterable[Mapping[str, Any]], *, replace: bool = False) -> list[Subscriber]:
        """Validate ALL entries first (errors name the entry and field), then add them in one go."""
        if isinstance(entries, (str, bytes, Mapping)) or not isinstance(entries, Iterable):
            raise InvalidSubscriber("subscribers", "must be a list of subscriber mappings")
        subs: list[Subscriber] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            try:
                sub = subscriber_from_mapping(entry)
            except InvalidSubscriber as exc:
                raise InvalidSubscriber(f"subscribers[{i}].{exc.field}", exc.reason) from None
            if sub.imsi in seen:
                raise InvalidSubscriber(f"subscribers[{i}].imsi", f"duplicate IMSI {sub.imsi}")
            seen.add(sub.imsi)
            subs.append(sub)
        if not replace:
            for sub in subs:
                try:
                    self.get(sub.imsi)
                except UnknownSubscriber:
                    continue
                raise SubscriberExists(sub.imsi)
        return [self.upsert(s) if replace else self.add(s) for s in subs]

    def import_yaml(self, path: str, *, replace: bool = False) -> list[Subscriber]:
        """Load a YAML file: either a list of subscribers or a mapping with a ``subscribers:`` list
        (so a scenario file can be imported as is)."""
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise InvalidSubscriber("yaml", f"{path}: {exc}".splitlines()[0]) from None
        if isinstance(data, Mapping):
            if "subscribers" not in data:
                raise InvalidSubscriber("subscribers", f"{path} has no 'subscribers:' list")
            data = data["subscribers"]
        if data is None:
            data = []
        return self.import_entries(data, replace=replace)

    # -- AuC ------------------------------------------------------------------------------------------
    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def _take_sqn(self, imsi: str) -> tuple["_AuthRow", int]:
        """Return (subscriber, fresh SQN); the SQN is on disk (<= a committed watermark) on return.

        Fast path: the next SQN of the in-memory block, whose watermark was committed before it was
        published. When half of the block is used, the writer thread commits the next watermark (on
        its own connection, so the caller never waits for that fsync); if the block runs out first,
        the caller waits for a synchronous reservation made by the same writer thread (one writer:
        no lock contention, no SQLite busy back-off). Any mismatch with the row (another process, a
        resync, a re-provisioning) discards the block: SQNs are skipped, never re-issued.
        """
        sub = self._auth_row(imsi)
        with self._blk_lock:
            blk = self._blocks.get(imsi)
            if (blk is not None and blk.left > 0 and blk.created == sub.created
                    and (sub.sqn == blk.watermark or sub.sqn == blk.pending)):
                nxt = auc.next_sqn(blk.last)
                blk.last = nxt
                blk.left -= 1
                if blk.pending is None and blk.left < (self.sqn_reserve + 1) // 2:
                    self._schedule_refill(imsi, blk)
                return sub, nxt
        # Reserve a fresh block synchronously: advance SQN_HE ``sqn_reserve`` times, persist, then use.
        if self.path == ":memory:":
            start, created, watermark = self._commit_watermark(self._db, imsi, None, None)  # type: ignore[misc]
        else:
            start, created, watermark = self._writer_pool().submit(
                self._commit_watermark, None, imsi, None, None).result()  # type: ignore[misc]
        first = auc.next_sqn(start)
        with self._blk_lock:
            self.commits += 1
            self._blocks[imsi] = _Block(created=created, watermark=watermark, last=first,
                                        left=self.sqn_reserve - 1)
        if created != sub.created:
            sub = self._auth_row(imsi)
        return sub, first

    def _auth_row(self, imsi: str) -> "_AuthRow":
        """The AuC columns of one subscriber (a lighter ``get`` for the per-vector path)."""
        with self._lock:
            row = self._db.execute("SELECT imsi, k, opc, amf, sqn, created FROM subscribers WHERE imsi=?",
                                   (imsi,)).fetchone()
        if row is None:
            raise UnknownSubscriber(imsi)
        return _AuthRow(*row)

    @staticmethod
    def _advance(sqn: int, steps: int) -> int:
        for _ in range(steps):
            sqn = auc.next_sqn(sqn)
        return sqn

    def _writer_pool(self) -> ThreadPoolExecutor:
        if self._refiller is None:
            self._refiller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hss-sqn")
        return self._refiller

    def _writer_conn(self) -> sqlite3.Connection:
        """The writer thread's own connection (created in that thread)."""
        if self._writer is None:
            self._writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self._writer.execute("PRAGMA synchronous=FULL")
            self._writer.execute("PRAGMA busy_timeout=10000")
        return self._writer

    def _commit_watermark(self, conn: sqlite3.Connection | None, imsi: str, base: int | None,
                          created: str | None) -> tuple[int, str, int] | None:
        """BEGIN IMMEDIATE; new watermark = SQN_HE advanced ``sqn_reserve`` times; COMMIT.

        With ``base``/``created`` given (a refill), only if the row still holds exactly that
        watermark for that subscriber; returns (old SQN_HE, created, new watermark) or None.
        """
        w = conn if conn is not None else self._writer_conn()
        w.execute("BEGIN IMMEDIATE")
        try:
            row = w.execute("SELECT sqn, created FROM subscribers WHERE imsi=?", (imsi,)).fetchone()
            if row is None:
                if base is None:
                    raise UnknownSubscriber(imsi)
                w.execute("ROLLBACK")
                return None
            start, row_created = int(row[0]), row[1]
            if base is not None and (start != base or row_created != created):
                w.execute("ROLLBACK")
                return None
            watermark = self._advance(start, self.sqn_reserve)
            w.execute("UPDATE subscribers SET sqn=?, updated=? WHERE imsi=?", (watermark, _now(), imsi))
            w.execute("COMMIT")
        except BaseException:
            w.execute("ROLLBACK")
            raise
        return start, row_created, watermark

    def _schedule_refill(self, imsi: str, blk: _Block) -> None:
        """Called with ``_blk_lock`` held: commit the next watermark in the background."""
        if self.sqn_reserve < 2 or self.path == ":memory:":
            return
        target = self._advance(blk.watermark, self.sqn_reserve)
        blk.pending = target
        self._writer_pool().submit(self._refill, imsi, blk, blk.watermark, target)

    def _refill(self, imsi: str, blk: _Block, base: int, target: int) -> None:
        try:
            ok = self._commit_watermark(None, imsi, base, blk.created) is not None
        except Exception:  # noqa: BLE001 - a failed refill only means the next take reserves synchronously
            ok = False
        with self._blk_lock:
            if ok:
                self.commits += 1
                self.refills += 1
            if self._blocks.get(imsi) is blk and blk.pending == target:
                blk.pending = None
                if ok:
                    blk.watermark = target
                    blk.left += self.sqn_reserve

    def flush(self) -> None:
        """Wait for background refills (tests, shutdown)."""
        if self._refiller is not None:
            self._refiller.submit(lambda: None).result()

    def next_vector(self, imsi: str, rng: Rng) -> Vector:
        """A vector with a fresh SQN (Annex C.3.2), persisted before this returns (§6.3.2)."""
        imsi = str(imsi)
        with self._lock:
            sub, sqn = self._take_sqn(imsi)
        rand = rng(16)
        if len(rand) != 16:
            raise ValueError("rng(16) must return 16 bytes")
        return _vector(sub, sqn, rand)

    def resync(self, imsi: str, rand: bytes, auts: bytes, rng: Rng) -> Vector:
        """Re-synchronise SQN_HE from AUTS = (SQN_MS xor AK*) || MAC-S (TS 33.102 §6.3.5, Annex C.3.4),
        then issue a fresh vector. Bad MAC-S -> ``ResyncFailed`` and SQN_HE unchanged."""
        imsi = str(imsi)
        rand, auts = bytes(rand), bytes(auts)
        if len(rand) != 16 or len(auts) != 14:
            raise ResyncFailed(f"RAND must be 16 bytes and AUTS 14 bytes (got {len(rand)}, {len(auts)})")
        with self._lock:
            sub = self.get(imsi)
            sqn_ms = auc.verify_auts(sub.k, sub.opc, rand, auts)
            if sqn_ms is None:
                raise ResyncFailed(f"MAC-S verification failed for {imsi}")
            self._begin()
            try:
                row = self._db.execute("SELECT sqn FROM subscribers WHERE imsi=?", (imsi,)).fetchone()
                if row is None:
                    raise UnknownSubscriber(imsi)
                sqn_he = int(row[0])
                new_he = auc.resync_sqn(sqn_he, sqn_ms)
                self._db.execute("UPDATE subscribers SET sqn=?, updated=? WHERE imsi=?", (new_he, _now(), imsi))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.commits += 1
            with self._blk_lock:
                self._blocks.pop(imsi, None)
        return self.next_vector(imsi, rng)


class _AuthRow(NamedTuple):
    imsi: str
    k: bytes
    opc: bytes
    amf: bytes
    sqn: int
    created: str


def _vector(sub: _AuthRow, sqn: int, rand: bytes) -> Vector:
    xres, ck, ik, autn = auc.generate(sub.k, sub.opc, sub.amf, sqn, rand)
    return Vector(imsi=sub.imsi, rand=rand, xres=xres, ck=ck, ik=ik, autn=autn, sqn=sqn)
