"""The SQLite pose store.

One file holds a dataset: the original encoded image bytes (never re-encoded), the
people with their keypoints in the dataset's own layout, per-image "ignore" regions
as COCO RLE, and a meta table (schema version, dataset, skeleton definition, the tool
and arguments that created it). Nothing is pickled: every value is a number, a string,
JSON text or raw little-endian float32 bytes, so a DB from a stranger cannot run code.

Writing goes through :class:`PoseDBWriter` in transactions of a few images each; an
image is inserted together with its people and regions or not at all, and re-running
an interrupted ingestion skips the images already stored (keyed by file name). One
writer at a time: a second one is refused at once with "busy" (an OS lock held for the
writer's lifetime, released even by kill -9), and a full disk stops the writer with a
message; images committed before either are kept.

Reading goes through :class:`PoseDB`, which opens one read-only connection per process
and thread, lazily, and drops it when pickled, so it is safe in multi-process loaders.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence
from urllib.parse import quote

import numpy as np

from ..skeleton import Skeleton, get_skeleton

__all__ = ["SCHEMA_VERSION", "PoseDB", "PoseDBWriter", "PoseDBError", "PoseDBWriteError",
           "Person"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                -- JSON
);
CREATE TABLE IF NOT EXISTS images (
    id        INTEGER PRIMARY KEY,
    file_name TEXT NOT NULL UNIQUE,    -- path relative to the dataset's image folder
    source_id TEXT,                    -- the dataset's own image id, if any
    width     INTEGER NOT NULL,
    height    INTEGER NOT NULL,
    split     TEXT NOT NULL,
    data      BLOB NOT NULL,           -- original encoded bytes (JPEG/PNG), untouched
    extra     TEXT                     -- JSON: dataset-specific fields
);
CREATE INDEX IF NOT EXISTS images_split ON images(split);
CREATE TABLE IF NOT EXISTS people (
    id         INTEGER PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    keypoints  BLOB NOT NULL,          -- float32 (K, 3): x, y, v; v 0/1/2; 0-based pixels
    num_keypoints INTEGER NOT NULL,    -- labelled keypoints (v > 0)
    bbox_x REAL, bbox_y REAL, bbox_w REAL, bbox_h REAL,
    area       REAL,
    is_crowd   INTEGER NOT NULL DEFAULT 0,
    scale      REAL,                   -- MPII: person height / 200 px
    center_x   REAL, center_y REAL,    -- MPII objpos (0-based)
    head_x1 REAL, head_y1 REAL, head_x2 REAL, head_y2 REAL,   -- MPII head box (0-based)
    source_id  TEXT,
    extra      TEXT                    -- JSON
);
CREATE INDEX IF NOT EXISTS people_image ON people(image_id);
CREATE TABLE IF NOT EXISTS ignore_regions (
    id       INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    counts   TEXT NOT NULL,            -- COCO compressed RLE string
    height   INTEGER NOT NULL,
    width    INTEGER NOT NULL,
    reason   TEXT                      -- 'crowd', 'unlabelled', ...
);
CREATE INDEX IF NOT EXISTS regions_image ON ignore_regions(image_id);
CREATE TABLE IF NOT EXISTS image_hashes (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    hash     TEXT NOT NULL             -- SHA-256 of the stored record (see record_hash)
);
"""

_IMAGE_COLS = ("file_name", "source_id", "width", "height", "split", "data", "extra")
_REGION_COLS = ("counts", "height", "width", "reason")
_PEOPLE_COLS = ("keypoints", "num_keypoints", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "area",
                "is_crowd", "scale", "center_x", "center_y", "head_x1", "head_y1", "head_x2",
                "head_y2", "source_id", "extra")


# Connections inherited through fork, kept referenced so they are never closed in a child.
_FORKED_CONNECTIONS: List[sqlite3.Connection] = []


class PoseDBError(RuntimeError):
    """A pose DB is missing, of another schema, or holds an invalid record."""


class PoseDBWriteError(PoseDBError):
    """The DB cannot be written at all (disk full, busy): not a problem of one record."""


class Person(dict):
    """One person to store. Keys: ``keypoints`` (K, 3) float32 x, y, v in the DB's layout;
    optional ``bbox`` (x, y, w, h), ``area``, ``is_crowd``, ``scale``, ``center`` (x, y),
    ``head_box`` (x1, y1, x2, y2), ``source_id``, ``extra`` (JSON-able dict)."""


def _f(v):
    return None if v is None else float(v)


def _encode_person(p: dict, num_keypoints: int, where: str) -> tuple:
    k = np.asarray(p["keypoints"], dtype=np.float32)
    if k.shape != (num_keypoints, 3):
        raise PoseDBError(f"{where}: keypoints must have shape ({num_keypoints}, 3), got {k.shape}")
    if not np.all(np.isfinite(k)):
        raise PoseDBError(f"{where}: keypoints contain NaN or inf")
    if not np.all(np.isin(k[:, 2], (0.0, 1.0, 2.0))):
        raise PoseDBError(f"{where}: visibility must be 0, 1 or 2, got {np.unique(k[:, 2])}")
    k = np.where(k[:, 2:3] > 0, k, 0.0).astype("<f4")   # unlabelled rows are all zeros
    bbox = p.get("bbox")
    bbox = (None,) * 4 if bbox is None else tuple(_f(x) for x in bbox)
    center = p.get("center")
    center = (None,) * 2 if center is None else tuple(_f(x) for x in center)
    head = p.get("head_box")
    head = (None,) * 4 if head is None else tuple(_f(x) for x in head)
    extra = p.get("extra")
    sid = p.get("source_id")
    return (k.tobytes(), int((k[:, 2] > 0).sum()), *bbox, _f(p.get("area")),
            int(bool(p.get("is_crowd", 0))), _f(p.get("scale")), *center, *head,
            None if sid is None else str(sid), None if extra is None else json.dumps(extra))


def _feed(h, v):
    """Add one stored column value to a hash, typed so that 1, 1.0, "1" and b"1" differ."""
    if v is None:
        h.update(b"N;")
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        h.update(b"b%d:" % len(b))
        h.update(b)
    elif isinstance(v, bool):
        h.update(b"i%d;" % int(v))
    elif isinstance(v, int):
        h.update(b"i%d;" % v)
    elif isinstance(v, float):
        h.update(b"f" + float(v).hex().encode("ascii") + b";")
    else:
        b = str(v).encode("utf-8")
        h.update(b"s%d:" % len(b))
        h.update(b)


def record_hash(image_row: Sequence, people_rows: Iterable[Sequence],
                region_rows: Iterable[Sequence]) -> str:
    """SHA-256 of one stored image record: its ``images`` columns (:data:`_IMAGE_COLS`,
    bytes included), then every person (:data:`_PEOPLE_COLS`) and ignore region
    (:data:`_REGION_COLS`) in insertion order. Computed from the values as they are
    written and, by :meth:`PoseDB.verify`, as they are read back, so any changed byte or
    number changes it."""
    h = hashlib.sha256(b"mxpose-record-v1;")
    for v in image_row:
        _feed(h, v)
    for tag, rows in ((b"P", people_rows), (b"R", region_rows)):
        for r in rows:
            h.update(tag)
            for v in r:
                _feed(h, v)
    return h.hexdigest()


def _combine_hashes(rows: Iterable[Sequence], dataset, skeleton_dict) -> str:
    """The DB's content hash: dataset, layout, then (file name, record hash) in file-name
    order, so it does not depend on insertion order or row ids."""
    h = hashlib.sha256(b"mxpose-db-v1;")
    _feed(h, json.dumps(dataset))
    _feed(h, json.dumps(skeleton_dict, sort_keys=True))
    for name, rh in rows:
        _feed(h, name)
        _feed(h, rh)
    return h.hexdigest()


def _sqlite_error(path: str, e: sqlite3.Error, committed: int) -> PoseDBWriteError:
    """One line for a failed write: disk full, busy, or what SQLite said."""
    msg = str(e)
    keep = (f"; the images committed before ({committed} by this writer) are kept: re-run "
            f"the same command to continue")
    if "full" in msg:
        return PoseDBWriteError(f"{path}: disk full while writing (SQLite: {msg}){keep} after "
                           f"freeing some space")
    if "locked" in msg or "busy" in msg:
        return PoseDBWriteError(f"{path}: the DB is busy (another process holds it: {msg}){keep}")
    return PoseDBWriteError(f"{path}: cannot write ({msg}){keep}")


def _connect(path: str, readonly: bool) -> sqlite3.Connection:
    if readonly:
        # SQLite URI rules: '%', '#' and '?' in a folder name must be percent-encoded, or the
        # path is cut there (another DB is read, or an empty file created at the cut).
        uri = "file:" + quote(os.path.abspath(path), safe="/") + "?mode=ro"
        con = sqlite3.connect(uri, uri=True, check_same_thread=True)
    else:
        con = sqlite3.connect(path, isolation_level=None)   # explicit BEGIN/COMMIT
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA foreign_keys=ON")
    return con


def _stored_record(con, image_id: int):
    """The stored values of one image record, as :func:`record_hash` takes them."""
    image_row = con.execute(f"SELECT {', '.join(_IMAGE_COLS)} FROM images WHERE id=?",
                            (image_id,)).fetchone()
    people = con.execute(f"SELECT {', '.join(_PEOPLE_COLS)} FROM people WHERE image_id=? "
                         "ORDER BY id", (image_id,)).fetchall()
    regions = con.execute(f"SELECT {', '.join(_REGION_COLS)} FROM ignore_regions "
                          "WHERE image_id=? ORDER BY id", (image_id,)).fetchall()
    return image_row, people, regions


def _stored_hashes(con) -> Dict[int, str]:
    """Record hashes written at ingestion, by image id (none in DBs from before mxpose
    hashed records; those have no ``image_hashes`` table when opened read-only)."""
    if con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                   "name='image_hashes'").fetchone() is None:
        return {}
    return dict(con.execute("SELECT image_id, hash FROM image_hashes"))


def _content_hash(con, dataset, skeleton_dict) -> str:
    stored = _stored_hashes(con)
    rows = con.execute("SELECT id, file_name FROM images ORDER BY file_name").fetchall()
    return _combine_hashes(((name, stored.get(iid) or record_hash(*_stored_record(con, iid)))
                            for iid, name in rows), dataset, skeleton_dict)


class PoseDBWriter:
    """Writes a pose DB in transactions; resumable.

    Parameters
    ----------
    path : str
        DB file; created with the schema if absent.
    dataset : str
        Dataset name stored in meta (``mpii``, ``coco``, ``synthetic``, ...).
    skeleton : Skeleton or str
        The layout of the stored keypoints; its full definition goes into meta.
    tool, args : str, dict
        What created the DB (recorded in meta for provenance).
    commit_every : int
        Images per transaction.
    sources : sequence of str, optional
        Paths of the files the records come from (annotation JSON, .mat); their SHA-256
        and size go into meta ``sources``, keyed by file name (a DB may hold several,
        e.g. the train and val files of one release; a file of the same name with other
        bytes is another version of it).
    allow_source_change : bool
        Continue a DB although a source file's SHA-256 differs from the one recorded
        when the DB was started (default: refuse, since the DB would mix two releases).

    Reopening an existing DB checks that dataset, skeleton and source files agree, then
    continues: :meth:`has_image` tells which images are already stored. Every record is
    hashed as it is written (:func:`record_hash`) and :meth:`close` stores the DB's
    content hash in meta (``content_hash``), which :meth:`PoseDB.verify` recomputes.
    """

    def __init__(self, path: str, dataset: str, skeleton, tool: str = "",
                 args: Optional[dict] = None, commit_every: int = 64,
                 sources: Sequence[str] = (), allow_source_change: bool = False):
        self.path = str(path)
        self.skeleton: Skeleton = get_skeleton(skeleton)
        self.dataset = dataset
        self.commit_every = max(1, int(commit_every))
        d = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(d):
            raise PoseDBError(f"cannot create {self.path}: folder {d} does not exist")
        self._lock = self._take_lock()
        try:
            self._con = _connect(self.path, readonly=False)
            self._con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            self._release_lock()
            if "full" in str(e):
                raise _sqlite_error(self.path, e, 0) from None
            raise PoseDBError(f"{self.path} is not a usable SQLite pose DB: {e}") from None
        self._pending = 0
        self.committed = 0
        try:
            self._init_meta(tool, args or {}, sources, allow_source_change)
            self._names = {r[0] for r in self._con.execute("SELECT file_name FROM images")}
            self._con.execute("BEGIN")
        except BaseException:
            self._con.close()
            self._con = None
            self._release_lock()
            raise

    def _take_lock(self):
        """An exclusive ``flock`` on the DB file for the writer's lifetime (None if the
        file system has no flock). SQLite's own byte-range locks are separate, so readers
        are not disturbed; a second writer is refused instead of interleaving."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise PoseDBError(f"cannot create {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PoseDBWriteError(
                    f"{self.path} is busy: another process (an ingestion still running?) is "
                    f"writing it; wait for it to finish, or write to another --out") from None
            return None   # no flock here (some network file systems): SQLite still locks
        return fd

    def _release_lock(self):
        if getattr(self, "_lock", None) is not None:
            os.close(self._lock)   # closing the descriptor releases the flock
            self._lock = None

    def _check_sources(self, recorded: dict, sources: Sequence[str], allow_change: bool,
                       has_images: bool) -> dict:
        from ..provenance import file_fingerprint, short_hash
        out = dict(recorded)
        for path in sources:
            fp = file_fingerprint(path)
            role = os.path.basename(path)
            old = recorded.get(role)
            if old and has_images and old.get("sha256") != fp["sha256"] and not allow_change:
                raise PoseDBError(
                    f"{self.path} was started from {old.get('path')} (sha256 "
                    f"{short_hash(old.get('sha256'))}, {old.get('size')} bytes) but {path} "
                    f"differs (sha256 {short_hash(fp['sha256'])}, {fp['size']} bytes): "
                    f"continuing would mix two versions of {role}; write a new DB, or "
                    f"allow it explicitly (--allow-changed-source)")
            if old and old.get("sha256") != fp["sha256"]:
                fp["previous"] = [old] + list(old.get("previous", []))
            out[role] = fp
        return out

    def _init_meta(self, tool, args, sources, allow_source_change):
        meta = dict(self._con.execute("SELECT key, value FROM meta"))
        if meta:
            version = json.loads(meta.get("schema_version", "null"))
            if version != SCHEMA_VERSION:
                raise PoseDBError(f"{self.path}: schema version {version}, this mxpose writes "
                                  f"{SCHEMA_VERSION}; write a new DB")
            ds = json.loads(meta["dataset"])
            sk = Skeleton.from_dict(json.loads(meta["skeleton"]))
            if ds != self.dataset or sk != self.skeleton:
                raise PoseDBError(
                    f"{self.path} already holds dataset {ds!r} with skeleton {sk.name!r}; "
                    f"refusing to add {self.dataset!r}/{self.skeleton.name!r} records to it")
            runs = json.loads(meta.get("runs", "[]"))
        else:
            runs = []
        runs.append({"tool": tool, "args": args, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        has_images = self._con.execute("SELECT 1 FROM images LIMIT 1").fetchone() is not None
        rows = {"schema_version": SCHEMA_VERSION, "dataset": self.dataset,
                "skeleton": self.skeleton.to_dict(), "runs": runs,
                "sources": self._check_sources(json.loads(meta.get("sources", "{}")), sources,
                                               allow_source_change, has_images)}
        if not meta:
            rows.update(created_by=tool, created_args=args)
        with self._con:
            self._con.execute("BEGIN")
            self._con.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                                  [(k, json.dumps(v)) for k, v in rows.items()])

    def set_meta(self, key: str, value):
        """Store a JSON-able value under ``key`` in the meta table (in the open transaction)."""
        self._con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                          (key, json.dumps(value)))

    def content_hash(self) -> str:
        """The DB's content hash over the records stored so far (:func:`_combine_hashes`);
        records written before mxpose hashed them are hashed from their stored values."""
        return _content_hash(self._con, self.dataset, self.skeleton.to_dict())

    def has_image(self, file_name: str) -> bool:
        return file_name in self._names

    def add_image(self, file_name: str, data: bytes, width: int, height: int, split: str,
                  people: Sequence[dict] = (), ignore_rles: Iterable[dict] = (),
                  source_id=None, extra: Optional[dict] = None) -> int:
        """Add one image with its people and ignore regions (all or nothing).

        ``ignore_rles`` are COCO RLE dicts ``{"size": [h, w], "counts": str|bytes}``
        (optionally with a ``"reason"``). Returns the image's row id. Raises
        :class:`PoseDBError` naming the image for an invalid record; nothing of that
        image is written then.
        """
        where = f"image {file_name!r}"
        if file_name in self._names:
            raise PoseDBError(f"{where} is already stored")
        if not data:
            raise PoseDBError(f"{where}: no image bytes")
        if int(width) <= 0 or int(height) <= 0:
            raise PoseDBError(f"{where}: invalid size {width}x{height}")
        rows = [_encode_person(p, self.skeleton.num_keypoints, f"{where}, person {i}")
                for i, p in enumerate(people)]
        image_row = (file_name, None if source_id is None else str(source_id), int(width),
                     int(height), str(split), bytes(data),
                     None if extra is None else json.dumps(extra))
        regions = []
        for r in ignore_rles:
            h, w = (int(x) for x in r["size"])
            if (h, w) != (int(height), int(width)):
                raise PoseDBError(f"{where}: ignore region of size {w}x{h} on a "
                                  f"{width}x{height} image")
            counts = r["counts"]
            if isinstance(counts, bytes):
                counts = counts.decode("ascii")
            if not isinstance(counts, str):
                raise PoseDBError(f"{where}: ignore region RLE must be compressed (str counts)")
            regions.append((counts, h, w, r.get("reason")))
        self._con.execute("SAVEPOINT img")
        try:
            cur = self._con.execute(
                f"INSERT INTO images({', '.join(_IMAGE_COLS)}) VALUES "
                f"({', '.join('?' * len(_IMAGE_COLS))})",
                image_row[:5] + (sqlite3.Binary(image_row[5]),) + image_row[6:])
            image_id = cur.lastrowid
            self._con.execute("INSERT INTO image_hashes(image_id, hash) VALUES (?, ?)",
                              (image_id, record_hash(image_row, rows, regions)))
            self._con.executemany(
                f"INSERT INTO people(image_id, {', '.join(_PEOPLE_COLS)}) VALUES "
                f"({', '.join('?' * (len(_PEOPLE_COLS) + 1))})",
                [(image_id,) + r for r in rows])
            self._con.executemany(
                "INSERT INTO ignore_regions(image_id, counts, height, width, reason) "
                "VALUES (?, ?, ?, ?, ?)", [(image_id,) + r for r in regions])
        except BaseException as e:
            try:
                self._con.execute("ROLLBACK TO img")
                self._con.execute("RELEASE img")
            except sqlite3.OperationalError:
                pass   # SQLite already rolled the whole transaction back (e.g. disk full)
            if isinstance(e, sqlite3.OperationalError):
                raise _sqlite_error(self.path, e, self.committed) from None
            raise
        self._con.execute("RELEASE img")
        self._names.add(file_name)
        self._pending += 1
        if self._pending >= self.commit_every:
            self.commit()
        return image_id

    def commit(self):
        """Make everything added so far durable."""
        try:
            self._con.execute("COMMIT")
        except sqlite3.OperationalError as e:
            raise _sqlite_error(self.path, e, self.committed) from None
        self.committed += self._pending
        self._pending = 0
        self._con.execute("BEGIN")

    def close(self, commit: bool = True):
        if self._con is None:
            return
        try:
            if self._con.in_transaction:
                try:
                    if commit:
                        self.set_meta("content_hash", self.content_hash())
                    self._con.execute("COMMIT" if commit else "ROLLBACK")
                except sqlite3.OperationalError as e:
                    if self._con.in_transaction:
                        self._con.execute("ROLLBACK")
                    raise _sqlite_error(self.path, e, self.committed) from None
                self.committed += self._pending
                self._pending = 0
            try:
                # Fold the WAL back so the DB is one self-contained file.
                self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._con.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.OperationalError:
                pass   # a reader has it open: the DB stays valid in WAL mode
        finally:
            self._con.close()
            self._con = None
            self._release_lock()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # Complete images are kept even when ingestion stops on an error or Ctrl-C:
        # a re-run resumes after them.
        self.close(commit=True)
        return False


class PoseDB:
    """Read access to a pose DB; safe to hand to loader worker processes.

    Parameters
    ----------
    path : str
        The DB file. Raises :class:`PoseDBError` if it is missing or not a pose DB.

    Notes
    -----
    Each process and thread opens its own read-only connection on first use; pickling
    drops it (nothing sqlite-related crosses a fork or spawn).
    """

    def __init__(self, path: str):
        self.path = str(path)
        if not os.path.isfile(self.path):
            raise PoseDBError(f"pose DB {self.path} does not exist")
        self._local = threading.local()
        meta = self._read_meta()
        self.meta: Dict[str, object] = meta
        self.skeleton: Skeleton = Skeleton.from_dict(meta["skeleton"])
        self.dataset: str = meta["dataset"]
        # Nothing stays open from construction: loaders fork/spawn workers after this.
        self.close()

    # -- connection handling ------------------------------------------------------------
    def _con(self) -> sqlite3.Connection:
        loc = self._local
        pid = os.getpid()
        if getattr(loc, "pid", None) != pid or loc.con is None:
            inherited = getattr(loc, "con", None)
            if inherited is not None:
                # A connection copied by fork must be neither used nor closed here (SQLite:
                # closing it could disturb the parent's file handles); park it forever.
                _FORKED_CONNECTIONS.append(inherited)
            loc.con = _connect(self.path, readonly=True)
            loc.pid = pid
        return loc.con

    def __getstate__(self):
        st = self.__dict__.copy()
        st.pop("_local", None)
        return st

    def __setstate__(self, st):
        self.__dict__.update(st)
        self._local = threading.local()

    def close(self):
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def _read_meta(self) -> dict:
        try:
            rows = self._con().execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.DatabaseError as e:
            raise PoseDBError(f"{self.path} is not a pose DB ({e})") from None
        meta = {k: json.loads(v) for k, v in rows}
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise PoseDBError(f"{self.path}: schema version {meta.get('schema_version')!r}, "
                              f"expected {SCHEMA_VERSION}")
        for key in ("dataset", "skeleton"):
            if key not in meta:
                raise PoseDBError(f"{self.path}: meta table lacks {key!r}")
        return meta

    # -- provenance ---------------------------------------------------------------------
    @property
    def content_hash(self) -> Optional[str]:
        """The content hash recorded when the DB was last written (meta ``content_hash``;
        None for DBs from before mxpose recorded it). :meth:`verify` recomputes it."""
        return self.meta.get("content_hash")

    @property
    def sources(self) -> dict:
        """``{file name: {"path", "sha256", "size"}}`` of the files the DB was ingested
        from (``"previous"``: earlier versions continued with ``allow_source_change``)."""
        return dict(self.meta.get("sources") or {})

    def verify(self, progress: bool = False) -> dict:
        """Recompute every record's hash from the stored bytes and values and the DB's
        content hash, and compare them with those recorded at ingestion.

        Returns ``{"ok", "images", "mismatched": [file names], "unhashed": n,
        "content_hash": recorded, "recomputed": hash}``; ``ok`` is False when any record
        or the content hash differs (``unhashed`` records, from before mxpose hashed them,
        cannot be checked one by one).
        """
        con = self._con()
        stored = _stored_hashes(con)
        rows = con.execute("SELECT id, file_name FROM images ORDER BY file_name").fetchall()
        it = rows
        if progress:
            from tqdm import tqdm
            it = tqdm(rows, unit="img", desc="verify", dynamic_ncols=True)
        mismatched, unhashed, pairs = [], 0, []
        for iid, name in it:
            rh = record_hash(*_stored_record(con, iid))
            if iid not in stored:
                unhashed += 1
            elif stored[iid] != rh:
                mismatched.append(name)
            pairs.append((name, rh))
        now = _combine_hashes(pairs, self.dataset, self.meta["skeleton"])
        recorded = self.content_hash
        ok = not mismatched and (recorded is None or recorded == now)
        return {"ok": ok, "images": len(rows), "mismatched": mismatched, "unhashed": unhashed,
                "content_hash": recorded, "recomputed": now}

    # -- queries --------------------------------------------------------------------------
    def splits(self) -> Dict[str, int]:
        """Image count per split."""
        return dict(self._con().execute(
            "SELECT split, COUNT(*) FROM images GROUP BY split ORDER BY split"))

    def image_ids(self, split: Optional[str] = None) -> np.ndarray:
        """Row ids of the images of ``split`` (all when None), ascending, int64."""
        if split is None:
            rows = self._con().execute("SELECT id FROM images ORDER BY id")
        else:
            rows = self._con().execute("SELECT id FROM images WHERE split=? ORDER BY id",
                                       (split,))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def __len__(self):
        return self._con().execute("SELECT COUNT(*) FROM images").fetchone()[0]

    def image_info(self, image_id: int) -> dict:
        """file_name, source_id, width, height, split, extra of one image (no bytes)."""
        r = self._con().execute(
            "SELECT file_name, source_id, width, height, split, extra FROM images WHERE id=?",
            (int(image_id),)).fetchone()
        if r is None:
            raise PoseDBError(f"{self.path}: no image with id {image_id}")
        return {"id": int(image_id), "file_name": r[0], "source_id": r[1], "width": r[2],
                "height": r[3], "split": r[4], "extra": json.loads(r[5]) if r[5] else {}}

    def image_bytes(self, image_id: int) -> bytes:
        r = self._con().execute("SELECT data FROM images WHERE id=?", (int(image_id),)).fetchone()
        if r is None:
            raise PoseDBError(f"{self.path}: no image with id {image_id}")
        return bytes(r[0])

    def load_image(self, image_id: int, reduce: int = 1) -> np.ndarray:
        """Decode an image to BGR uint8 (h, w, 3) with :func:`mxpose.data.image.decode_image`
        (stored-pixel order, EXIF not applied); ``reduce`` in (1, 2, 4, 8) decodes JPEGs at
        1/reduce size. Raises PoseDBError on corrupt or truncated bytes."""
        from .image import ImageDecodeError, decode_image
        try:
            return decode_image(self.image_bytes(image_id), reduce)[0]
        except ImageDecodeError as e:
            raise PoseDBError(f"{self.path}: image id {image_id} "
                              f"({self.image_info(image_id)['file_name']}) cannot be decoded: "
                              f"{e}") from None

    def people(self, image_id: int) -> dict:
        """The people of one image as arrays.

        Returns
        -------
        dict with ``keypoints`` (N, K, 3) float32, ``bbox`` (N, 4) float32 x, y, w, h
        (NaN where unknown), ``area`` (N,), ``is_crowd`` (N,) bool, ``scale`` (N,),
        ``center`` (N, 2), ``head_box`` (N, 4) (NaN where unknown), ``source_id`` list.
        """
        rows = self._con().execute(
            f"SELECT {', '.join(_PEOPLE_COLS)} FROM people WHERE image_id=? ORDER BY id",
            (int(image_id),)).fetchall()
        K = self.skeleton.num_keypoints
        n = len(rows)
        kp = np.zeros((n, K, 3), dtype=np.float32)
        num = np.array([[np.nan if v is None else v for v in r[2:15]] for r in rows],
                       dtype=np.float32).reshape(n, 13)
        for i, r in enumerate(rows):
            a = np.frombuffer(r[0], dtype="<f4")
            if a.size != K * 3:
                info = self.image_info(image_id)
                raise PoseDBError(f"{self.path}: person {i} of image {info['file_name']!r} "
                                  f"has {a.size} keypoint values, expected {K * 3}")
            kp[i] = a.reshape(K, 3)
        return {"keypoints": kp, "bbox": num[:, 0:4], "area": num[:, 4],
                "is_crowd": num[:, 5] > 0, "scale": num[:, 6], "center": num[:, 7:9],
                "head_box": num[:, 9:13], "source_id": [r[15] for r in rows],
                "extra": [json.loads(r[16]) if r[16] else {} for r in rows]}

    def ignore_rles(self, image_id: int) -> List[dict]:
        """COCO RLE dicts ``{"size": [h, w], "counts": bytes, "reason": str}``."""
        rows = self._con().execute(
            "SELECT counts, height, width, reason FROM ignore_regions WHERE image_id=? "
            "ORDER BY id", (int(image_id),)).fetchall()
        return [{"size": [h, w], "counts": c.encode("ascii"), "reason": r}
                for c, h, w, r in rows]

    def ignore_mask(self, image_id: int) -> np.ndarray:
        """(h, w) uint8, 1 where the image must not be penalised (union of the regions)."""
        info = self.image_info(image_id)
        mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
        rles = self.ignore_rles(image_id)
        if rles:
            from pycocotools import mask as mask_utils
            merged = mask_utils.merge([{"size": r["size"], "counts": r["counts"]} for r in rles],
                                      intersect=False)
            mask[:] = mask_utils.decode(merged)
        return mask

    def record(self, image_id: int) -> dict:
        """Everything about one image except the decoded pixels."""
        rec = self.image_info(image_id)
        rec["people"] = self.people(image_id)
        rec["ignore_rles"] = self.ignore_rles(image_id)
        return rec

    def stats(self) -> dict:
        """Counts for ``db_info``: images and people per split, labelled keypoints."""
        con = self._con()
        out = {}
        for split, n_img in self.splits().items():
            n_people, n_kp, n_crowd = con.execute(
                "SELECT COUNT(p.id), COALESCE(SUM(p.num_keypoints), 0), "
                "COALESCE(SUM(p.is_crowd), 0) FROM people p JOIN images i ON p.image_id=i.id "
                "WHERE i.split=?", (split,)).fetchone()
            n_reg = con.execute(
                "SELECT COUNT(r.id) FROM ignore_regions r JOIN images i ON r.image_id=i.id "
                "WHERE i.split=?", (split,)).fetchone()[0]
            out[split] = {"images": n_img, "people": n_people, "crowd": n_crowd,
                          "keypoints_labelled": n_kp, "ignore_regions": n_reg}
        return out

    def people_table(self, split: Optional[str] = None) -> dict:
        """All people of a split in one query, for building sample indices.

        Returns a dict of flat arrays over people, ordered by (image id, person id):
        ``image_id`` int64, ``num_keypoints`` int32, ``bbox`` (P, 4), ``area``, ``scale``,
        ``center`` (P, 2) float32 (NaN where unknown), ``is_crowd`` bool.
        """
        q = ("SELECT p.image_id, p.num_keypoints, p.bbox_x, p.bbox_y, p.bbox_w, p.bbox_h, "
             "p.area, p.scale, p.center_x, p.center_y, p.is_crowd FROM people p")
        args = ()
        if split is not None:
            q += " JOIN images i ON p.image_id=i.id WHERE i.split=?"
            args = (split,)
        rows = self._con().execute(q + " ORDER BY p.image_id, p.id", args).fetchall()
        a = np.array([[np.nan if v is None else v for v in r] for r in rows],
                     dtype=np.float64).reshape(len(rows), 11)
        return {"image_id": a[:, 0].astype(np.int64), "num_keypoints": a[:, 1].astype(np.int32),
                "bbox": a[:, 2:6].astype(np.float32), "area": a[:, 6].astype(np.float32),
                "scale": a[:, 7].astype(np.float32), "center": a[:, 8:10].astype(np.float32),
                "is_crowd": a[:, 10] > 0}

    def integrity_check(self) -> str:
        return self._con().execute("PRAGMA integrity_check").fetchone()[0]
