"""The workers' shared scoreboard: live state for the watchdog and ``scanner status``.

The master maps one block of shared memory before it forks (backed by
``server.status_file`` when set, else anonymous) and gives every worker a slot in it,
as amavisd-nanny's database does for amavis's children. A worker writes only its own
slot: a heartbeat from its event loop every second, how many connections (against its
share of ``server.concurrency``) and transactions it has open, the stage, mail_id and
content digest of the message it entered last, and cumulative counters (messages,
categories, actions, errors). The master reads the heartbeats to find workers whose
event loop is stuck; ``scanner status`` reads the file.

Each slot also keeps a few *hang records*: digests of messages that stopped a worker
(the watchdog killed the worker while that message's stage was the last one entered,
or its stage stuck in the thread pool) with a count. The master writes them into the
slot of the worker it kills (that worker is gone), a retiring worker into its own.
Any worker sums the records of every slot to recognise a message that keeps stopping
the filter (``server.hang_limit``). With a status file, a new master carries the
previous run's hang records over (those younger than :data:`HANG_MEMORY`), so a
restart does not give a poison message another ``hang_limit`` workers; everything else
starts from zero.

Times are ``time.monotonic()`` values (CLOCK_MONOTONIC is one clock for every process
of the machine), so any process can tell how old a heartbeat is. Reads are not locked:
a value read while a worker writes it is at worst one update old, which a status view
can afford.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from scanner.policy.decide import PRECEDENCE

MAGIC = b"SCANSTAT"
VERSION = 5  # 3: the Accepted action (AM.PDP scans for a milter) has a counter;
# 4: the Archived action (archive_directory, archive_to) has one, after the others;
# 5: the SQL log's messages written and dropped ([sql_log]), after those
HANG_RECORDS = 8  # per slot; the oldest record makes way for a new digest
DIGEST_BYTES = 16
_DIGEST_HEAD = 1 << 20  # a message's digest covers its first MiB and its length
# Hang records older than this are not carried into a new run: Postfix has bounced the
# message by then (maximal_queue_lifetime, 5 days by default).
HANG_MEMORY = 5 * 86400.0
ACTIONS = ("Relayed", "Accepted", "TempFailed", "Quarantined", "Discarded", "Rejected", "Bounced",
           "NoBounce", "Archived")
# Every counter a slot keeps, in file order. "errors": 451 after an exception inside
# the filter; "timeouts": 451 after server.message_timeout.
COUNTERS = ("messages", "passed", "blocked", "errors", "timeouts", "hung",
            *(f"category:{c}" for c in PRECEDENCE), *(f"action:{a}" for a in ACTIONS),
            "sqllog:written", "sqllog:dropped")
_COUNTER_INDEX = {name: i for i, name in enumerate(COUNTERS)}
# How many counters a slot of each version this scanner reads has: a file written by a
# master started before an upgrade (counters were only ever added at the end) is read
# as it is, its missing counters zero, its hang records carried over.
_VERSION_COUNTERS = {3: len(COUNTERS) - 3, 4: len(COUNTERS) - 2, VERSION: len(COUNTERS)}
_ACTION_NAMES = {a: f"action:{a}" for a in ACTIONS}

# magic, version, slots, master pid, started (wall clock), started (monotonic),
# worker starts after the first ones, watchdog kills
_HEADER = struct.Struct("<8sHHiddII")
HEADER_SIZE = 64
# pid, starts of this slot, spawned, heartbeat, open transactions, open connections
# and the worker's connection limit (two 16-bit fields in what was padding before),
# stage since, stage, mail_id, digest, counters, hang records (digest, count, when)
_SLOT_HEAD = "<iIddIHH"
_STAGE = struct.Struct(f"<d24s12s{DIGEST_BYTES}s")
_HANG = struct.Struct(f"<{DIGEST_BYTES}sId")


def _slot_struct(counters: int) -> struct.Struct:
    return struct.Struct(f"{_SLOT_HEAD}d24s12s{DIGEST_BYTES}s{counters}Q"
                         + f"{DIGEST_BYTES}sId" * HANG_RECORDS)


_SLOT = _slot_struct(len(COUNTERS))
_HEARTBEAT_AT = struct.calcsize("<iId")
_OPEN_AT = struct.calcsize("<iIdd")
_CONNECTIONS_AT = _OPEN_AT + 4
_STAGE_AT = struct.calcsize(_SLOT_HEAD)
_COUNTERS_AT = _STAGE_AT + _STAGE.size
_HANGS_AT = _COUNTERS_AT + 8 * len(COUNTERS)
SLOT_SIZE = _SLOT.size
_MASTER_PID_AT = struct.calcsize("<8sHH")
_RESTARTS_AT = struct.calcsize("<8sHHidd")
_KILLS_AT = _RESTARTS_AT + 4
# after the header proper: 1 once any hang record exists (a cheap test for every message)
_ANY_HANG_AT = _HEADER.size


def board_size(slots: int, version: int = VERSION) -> int:
    return HEADER_SIZE + slots * _slot_struct(_VERSION_COUNTERS[version]).size


class StatusFileError(OSError):
    """The status file cannot be created, locked or read."""


class Scoreboard:
    """The master's view: creates the shared block, hands out slots, reads heartbeats."""

    def __init__(self, slots: int, path: str = "") -> None:
        self.slots = slots
        self.path = path
        self._fd = -1
        size = board_size(slots)
        previous: list[tuple[bytes, int, float]] = []
        if path:
            self._fd = _open_locked(path)
            previous = carried_hangs(_read_all(self._fd), time.time())
            try:
                os.ftruncate(self._fd, size)
                # blocks now: a sparse file written through the map dies of SIGBUS on a
                # full disk, at start or later in a worker
                os.posix_fallocate(self._fd, 0, size)
            except OSError as exc:
                os.close(self._fd)
                raise StatusFileError(exc.errno, f"cannot allocate it: {exc.strerror}") \
                    from None
            self._map = mmap.mmap(self._fd, size)
        else:
            self._map = mmap.mmap(-1, size)  # MAP_SHARED: the forked workers see it
        self._map[:size] = bytes(size)
        self._restarts = 0
        self._kills = 0
        self._write_header(os.getpid())
        self.carried = self._restore_hangs(previous)

    def _restore_hangs(self, records: list[tuple[bytes, int, float]]) -> int:
        """Write the previous run's hang records into the slots (the newest ones, as many
        as fit); return how many were kept."""
        kept = sorted(records, key=lambda r: -r[2])[:self.slots * HANG_RECORDS]
        for n, (digest, count, when) in enumerate(kept):
            slot, index = divmod(n, HANG_RECORDS)
            _HANG.pack_into(self._map, HEADER_SIZE + slot * SLOT_SIZE + _HANGS_AT
                            + index * _HANG.size, digest, count, when)
        if kept:
            self._map[_ANY_HANG_AT] = 1
        return len(kept)

    def _write_header(self, master_pid: int) -> None:
        _HEADER.pack_into(self._map, 0, MAGIC, VERSION, self.slots, master_pid, time.time(),
                          time.monotonic(), self._restarts, self._kills)

    def slot(self, index: int) -> WorkerSlot:
        return WorkerSlot(self._map, HEADER_SIZE + index * SLOT_SIZE, self.slots)

    def spawned(self, index: int, restart: bool) -> None:
        """The master is about to fork for slot ``index``: fresh state, counters kept."""
        self.slot(index).reset(0)
        if restart:
            self._restarts += 1
            struct.pack_into("<I", self._map, _RESTARTS_AT, self._restarts)

    def set_pid(self, index: int, pid: int) -> None:
        struct.pack_into("<i", self._map, HEADER_SIZE + index * SLOT_SIZE, pid)

    def killed_by_watchdog(self) -> None:
        self._kills += 1
        struct.pack_into("<I", self._map, _KILLS_AT, self._kills)

    def read_slot(self, index: int) -> SlotState:
        return self.slot(index).state()

    def close(self) -> None:
        """The master stops: mark the board as no longer served (pid 0) and unmap it."""
        with contextlib.suppress(ValueError):
            struct.pack_into("<i", self._map, _MASTER_PID_AT, 0)
            self._map.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _open_locked(path: str) -> int:
    """Open (create) the status file, locked against a second master using it."""
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, 0o755, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StatusFileError(exc.errno, f"cannot create it: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StatusFileError(0, "another scanner serve is using it") from None
    return fd


def _read_all(fd: int) -> bytes:
    """The status file's current contents (what the previous master left)."""
    size = min(os.fstat(fd).st_size, board_size(0xFFFF))  # no more than a board can be
    return os.pread(fd, size, 0) if size else b""


def carried_hangs(data: bytes, now: float) -> list[tuple[bytes, int, float]]:
    """The hang records of a previous run's board (``data``, the file's bytes), merged
    per digest, without those older than :data:`HANG_MEMORY`; [] if ``data`` is not a
    complete board of this version."""
    try:
        board = parse_board(data)
    except StatusFileError:
        return []
    return [(bytes.fromhex(r.digest), r.count, r.last) for r in board.hang_records()
            if now - r.last < HANG_MEMORY]


class WorkerSlot:
    """One worker's part of the board; only that worker writes to it after the fork
    (the hang records also by the master once the worker is gone)."""

    __slots__ = ("_map", "_at", "_open", "_slots")

    def __init__(self, board: mmap.mmap, at: int, slots: int) -> None:
        self._map = board
        self._at = at
        self._open = 0
        self._slots = slots

    def reset(self, pid: int) -> None:
        """A new worker takes the slot: fresh state; counters and hang records stay."""
        now = time.monotonic()
        state = self.state()
        _SLOT.pack_into(self._map, self._at, pid, state.starts + 1, now, now, 0, 0, 0, now,
                        b"", b"", b"", *state.counter_values, *state.hang_values)

    def beat(self) -> None:
        struct.pack_into("<d", self._map, self._at + _HEARTBEAT_AT, time.monotonic())

    def connections(self, open_: int, limit: int) -> None:
        """The worker's open SMTP/LMTP connections and its share of server.concurrency."""
        struct.pack_into("<HH", self._map, self._at + _CONNECTIONS_AT, min(open_, 0xFFFF),
                         min(limit, 0xFFFF))

    def begin(self, task: Any) -> None:
        self._open += 1
        struct.pack_into("<I", self._map, self._at + _OPEN_AT, self._open)
        self.stage(task, "parse")

    def stage(self, task: Any, name: str) -> None:
        """``task`` (a :class:`scanner.task.Task`) enters stage ``name``."""
        _STAGE.pack_into(self._map, self._at + _STAGE_AT, time.monotonic(),
                         name.encode("ascii", "replace")[:24],
                         task.mail_id.encode("ascii", "replace")[:12], task.digest)

    def end(self, counters: Iterable[str]) -> None:
        self._open = max(0, self._open - 1)
        struct.pack_into("<I", self._map, self._at + _OPEN_AT, self._open)
        if self._open == 0:
            _STAGE.pack_into(self._map, self._at + _STAGE_AT, time.monotonic(), b"", b"",
                             b"")
        self.count(counters)

    def count(self, counters: Iterable[str], by: int = 1) -> None:
        """Add ``by`` to each named counter (the worker's SQL log thread counts its own
        counters, the event loop the others: no two threads write one)."""
        for name in counters:
            index = _COUNTER_INDEX.get(name)
            if index is None:
                continue
            at = self._at + _COUNTERS_AT + 8 * index
            (value,) = struct.unpack_from("<Q", self._map, at)
            struct.pack_into("<Q", self._map, at, value + by)

    def record_hang(self, digest: bytes) -> None:
        """The message with ``digest`` stopped this slot's worker once more."""
        if not digest.strip(b"\0"):
            return
        records = [_HANG.unpack_from(self._map, self._at + _HANGS_AT + i * _HANG.size)
                   for i in range(HANG_RECORDS)]
        index = next((i for i, r in enumerate(records) if r[0] == digest), None)
        count = 1
        if index is None:  # a free record, else the oldest one
            index = min(range(HANG_RECORDS), key=lambda i: (records[i][1] > 0, records[i][2]))
        else:
            count = records[index][1] + 1
        _HANG.pack_into(self._map, self._at + _HANGS_AT + index * _HANG.size, digest, count,
                        time.time())
        self._map[_ANY_HANG_AT] = 1

    def hangs(self, digest: bytes) -> int:
        """How often the message with ``digest`` stopped a worker, summed over slots."""
        if not self._map[_ANY_HANG_AT]:
            return 0
        total = 0
        for slot in range(self._slots):
            at = HEADER_SIZE + slot * SLOT_SIZE + _HANGS_AT
            for i in range(HANG_RECORDS):
                if self._map[at + i * _HANG.size:at + i * _HANG.size + DIGEST_BYTES] == digest:
                    total += _HANG.unpack_from(self._map, at + i * _HANG.size)[1]
        return total

    def state(self) -> SlotState:
        """The slot as it is now."""
        return SlotState.unpack(bytes(self._map[self._at:self._at + SLOT_SIZE]))


class NullSlot:
    """A board slot that records nothing (``scanner scan``, tests, benchmarks)."""

    def begin(self, task: Any) -> None:
        pass

    def stage(self, task: Any, name: str) -> None:
        pass

    def end(self, counters: Iterable[str]) -> None:
        pass

    def count(self, counters: Iterable[str]) -> None:
        pass

    def record_hang(self, digest: bytes) -> None:
        pass

    def hangs(self, digest: bytes) -> int:
        return 0


def message_digest(raw: bytes) -> bytes:
    """A message's identity across Postfix's retries: BLAKE2b of its first MiB and length."""
    h = hashlib.blake2b(memoryview(raw)[:_DIGEST_HEAD], digest_size=DIGEST_BYTES)
    h.update(len(raw).to_bytes(8, "little"))
    return h.digest()


def summary_counters(verbs: Iterable[str], category: str, actions: Iterable[str]
                     ) -> list[str]:
    """The counters a message adds to: the verbs of its summary lines (a message with
    passed and blocked recipients has a ``Passed`` and a ``Blocked`` line, and counts
    in both, as log parsers count it), its category (one of the policy's categories,
    e.g. VIRUS) and the actions of its summary lines."""
    names = ["messages", *("passed" if verb == "Passed" else "blocked" for verb in verbs),
             "category:" + category]
    for action in actions:
        for prefix, name in _ACTION_NAMES.items():
            if action.startswith(prefix):
                names.append(name)
                break
    return names


@dataclass(frozen=True, slots=True)
class HangRecord:
    """A message that stopped a worker: its digest, how often, when last (wall clock)."""

    digest: str
    count: int
    last: float


@dataclass(frozen=True, slots=True)
class SlotState:
    """One slot as read back."""

    pid: int
    starts: int
    spawned: float
    heartbeat: float
    open_transactions: int
    connections: int
    connection_limit: int
    stage_since: float
    stage: str
    mail_id: str
    digest: bytes
    counter_values: tuple[int, ...]
    hang_values: tuple[Any, ...]

    @classmethod
    def unpack(cls, data: bytes, version: int = VERSION) -> SlotState:
        """A slot of a file of ``version``; counters it does not have read as zero."""
        n = _VERSION_COUNTERS[version]
        values = _slot_struct(n).unpack(data)
        pid, starts, spawned, beat, open_, conns, limit, since, stage, mail_id, digest = \
            values[:11]
        counters = (*values[11:11 + n], *(0,) * (len(COUNTERS) - n))
        return cls(pid, starts, spawned, beat, open_, conns, limit, since,
                   stage.rstrip(b"\0").decode("ascii", "replace"),
                   mail_id.rstrip(b"\0").decode("ascii", "replace"), digest,
                   counters, tuple(values[11 + n:]))

    @property
    def counters(self) -> dict[str, int]:
        return dict(zip(COUNTERS, self.counter_values, strict=True))

    @property
    def hang_records(self) -> list[HangRecord]:
        v = self.hang_values
        return [HangRecord(v[i].hex(), v[i + 1], v[i + 2]) for i in range(0, len(v), 3)
                if v[i + 1]]


@dataclass(frozen=True, slots=True)
class BoardState:
    """The whole board as read back by ``scanner status``."""

    master_pid: int
    started_wall: float
    started_mono: float
    restarts: int
    watchdog_kills: int
    slots: list[SlotState] = field(default_factory=list)

    def hang_records(self) -> list[HangRecord]:
        """Every message that stopped a worker, counts summed over slots, most first."""
        merged: dict[str, list[float]] = {}
        for slot in self.slots:
            for record in slot.hang_records:
                entry = merged.setdefault(record.digest, [0, 0.0])
                entry[0] += record.count
                entry[1] = max(entry[1], record.last)
        return sorted((HangRecord(d, int(c), t) for d, (c, t) in merged.items()),
                      key=lambda r: (-r.count, -r.last))

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(COUNTERS, 0)
        for slot in self.slots:
            for name, value in slot.counters.items():
                out[name] += value
        return out


def read_board(path: str) -> BoardState:
    """Read a status file written by a running (or stopped) ``scanner serve``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise StatusFileError(exc.errno, f"cannot read it: {exc.strerror}") from None
    return parse_board(data)


def parse_board(data: bytes) -> BoardState:
    """A status file's contents as a :class:`BoardState`."""
    if len(data) < _HEADER.size or data[:8] != MAGIC:
        raise StatusFileError(0, "not a scanner status file")
    magic, version, slots, pid, wall, mono, restarts, kills = _HEADER.unpack_from(data)
    if version not in _VERSION_COUNTERS:
        raise StatusFileError(0, f"status file version {version}, this scanner reads "
                                 f"{', '.join(map(str, sorted(_VERSION_COUNTERS)))}")
    if len(data) < board_size(slots, version):
        raise StatusFileError(0, "status file is truncated")
    size = _slot_struct(_VERSION_COUNTERS[version]).size
    states = [SlotState.unpack(data[HEADER_SIZE + i * size:HEADER_SIZE + (i + 1) * size],
                               version) for i in range(slots)]
    return BoardState(pid, wall, mono, restarts, kills, states)
