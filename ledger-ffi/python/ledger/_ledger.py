"""The :class:`Ledger` handle over the C ABI."""

from __future__ import annotations

import array
import ctypes
import os
import threading
from ctypes import byref, c_char, c_size_t
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

from . import _ffi
from .errors import InvalidArgumentError, NotFoundError, error_for_status
from .model import Balance, BatchClose, BatchSummary, Sync, TxRecord, TxResult
from .packing import (
    BALANCE_STRUCT,
    BATCH_STRUCT,
    RECORD_STRUCT,
    TX_SIZE,
    balance_from_fields,
    batch_from_fields,
    check_id,
    check_u64,
    currency_arg,
    numpy_module,
    pack_txs,
    record_from_fields,
    tx_dtype,
)

__all__ = ["Ledger", "Feed", "DEFAULT_LIST_LIMIT"]

_lib = _ffi.lib
_BAD = _ffi.LEDGER_ERR_INVALID_ARGUMENT
_M64 = (1 << 64) - 1

#: Default ``limit`` of :meth:`Ledger.list`.
DEFAULT_LIST_LIMIT = 1000

# array.array typecode of a uint32 on this platform.
_U32 = "I" if array.array("I").itemsize == 4 else "L"
# Results by code: indexing a tuple is much cheaper than calling the enum.
_RESULTS = tuple(TxResult(i) for i in range(max(TxResult) + 1))


def _call(func: Any, *args: Any) -> None:
    """Calls a ``ledger_*`` function that returns a status; a non-OK status raises the
    matching :class:`LedgerError` subclass carrying the status and this thread's
    ``ledger_last_error()`` (read on the same thread, right after the call)."""
    status = func(*args)
    if status != _ffi.LEDGER_OK:
        raise error_for_status(status, _ffi.last_error())


def _sync_code(sync: Union[str, int]) -> int:
    if isinstance(sync, str):
        names = {"always": Sync.ALWAYS, "none": Sync.NONE}
        try:
            return int(names[sync.lower()])
        except KeyError:
            raise InvalidArgumentError(_BAD, f"sync must be 'always' or 'none', not {sync!r}") from None
    code = int(sync)  # Sync or a raw LEDGER_SYNC_* value: the library judges it
    if not 0 <= code < 1 << 32:
        raise InvalidArgumentError(_BAD, f"sync {code} does not fit uint32")
    return code


_FORKED = (
    "the ledger was opened in another process: a forked child cannot use its parent's handle "
    "(the engine's threads do not survive fork); open the directory again in the child after the parent closed it"
)


class _TxBuffer:
    """The address and count of a packed transaction buffer, and what keeps it alive."""

    __slots__ = ("address", "count", "keep", "is_numpy")

    def __init__(self, buf: Any) -> None:
        self.is_numpy = False
        np = numpy_module()
        if np is not None and isinstance(buf, np.ndarray) and buf.dtype.fields is not None:
            if buf.dtype != tx_dtype():
                raise InvalidArgumentError(
                    _BAD, f"a numpy array of transactions must have dtype ledger.TX_DTYPE, not {buf.dtype}"
                )
            buf = np.ascontiguousarray(buf).reshape(-1)  # a copy only when not contiguous
            self.is_numpy = True
            self.keep = buf
            self.count = buf.shape[0]
            self.address = buf.__array_interface__["data"][0] if self.count else None
        elif isinstance(buf, bytes):
            if len(buf) % TX_SIZE:
                raise InvalidArgumentError(_BAD, f"a packed buffer holds a multiple of {TX_SIZE} bytes, not {len(buf)}")
            self.keep = ctypes.c_char_p(buf)  # points into the bytes object: no copy
            self.count = len(buf) // TX_SIZE
            self.address = ctypes.cast(self.keep, ctypes.c_void_p).value if self.count else None
            self.keep = (buf, self.keep)
        else:
            try:
                view = memoryview(buf)
            except TypeError:
                raise TypeError(
                    f"submit_packed takes bytes, a buffer or a numpy array of ledger.TX_DTYPE, not {type(buf).__name__}"
                ) from None
            if not view.c_contiguous:
                raise InvalidArgumentError(_BAD, "a packed buffer must be contiguous")
            view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
            if view.nbytes % TX_SIZE:
                raise InvalidArgumentError(
                    _BAD, f"a packed buffer holds a multiple of {TX_SIZE} bytes, not {view.nbytes}"
                )
            if view.readonly:
                view = memoryview(bytearray(view))  # ctypes can only address writable buffers
            self.count = view.nbytes // TX_SIZE
            if self.count:
                cbuf = (c_char * view.nbytes).from_buffer(view)
                self.keep = cbuf
                self.address = ctypes.addressof(cbuf)
            else:
                self.keep, self.address = None, None
        if self.address is not None and self.address % 8:
            # ledger_tx is 8-byte aligned in C: hand the library an aligned copy.
            copy = bytearray(self.count * TX_SIZE)
            ctypes.memmove((c_char * len(copy)).from_buffer(copy), self.address, len(copy))
            cbuf = (c_char * len(copy)).from_buffer(copy)
            self.keep = (self.keep, cbuf)
            self.address = ctypes.addressof(cbuf)


class _Owned:
    """A library handle this object owns: released by ``close()``, at the end of a
    ``with`` block, or when garbage collected (never from a ``fork`` child, whose copy
    the library never made)."""

    _handle: Optional[Any]
    _pid: int
    _close_fn: Any

    def close(self) -> None:  # pragma: no cover - each subclass defines it
        raise NotImplementedError

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            self._handle = None
            if self._pid == os.getpid():
                self._close_fn(handle)


class Ledger(_Owned):
    """An open ledger directory (``ledger_open``).

    ``Ledger(path, sync="always", segment_bytes=0)``: ``sync="always"`` makes a submit
    return only once its transactions are on stable storage; ``"none"`` leaves write-back
    to the OS (a process kill loses nothing, an OS crash may lose the tail).
    ``segment_bytes`` sizes new log segment files (0: the library's default, 64 MiB).
    ``hot_bytes_max`` bounds the memory for recent transactions (0: the default, 384
    MiB; older ones are in the cold tier on disk) and ``checkpoint_every_records`` the
    records between checkpoints, which bounds what a reopen replays (0: 1048576).

    One ``Ledger`` may be used from many Python threads at once: every call releases the
    GIL while in the library. ``close()`` (or leaving a ``with`` block) waits for calls in
    flight on other threads, then flushes and releases the directory; later calls raise
    :class:`InvalidArgumentError`. A ``Ledger`` that is garbage collected while open is
    closed then. A handle is not usable in a child made by ``fork``: its calls raise, and
    the child's copy is never closed through the library (the parent's is).
    """

    def __init__(
        self,
        path: Union[str, bytes, "os.PathLike[str]"],
        sync: Union[str, int] = "always",
        segment_bytes: int = 0,
        hot_bytes_max: int = 0,
        checkpoint_every_records: int = 0,
    ) -> None:
        self._handle: Optional[ctypes._Pointer] = None  # type: ignore[name-defined]
        self._cond = threading.Condition(threading.Lock())
        self._users = 0
        self._close_fn = _lib.ledger_close  # kept for __del__ at interpreter exit
        self._pid = os.getpid()
        raw_path = os.fsencode(path)
        if b"\0" in raw_path:
            raise InvalidArgumentError(_BAD, "the path contains a NUL byte")
        options = _ffi.ledger_options(
            _sync_code(sync),
            0,
            check_u64(segment_bytes, "segment_bytes"),
            check_u64(hot_bytes_max, "hot_bytes_max"),
            check_u64(checkpoint_every_records, "checkpoint_every_records"),
        )
        handle = _ffi.ledger_p()
        _call(_lib.ledger_open, raw_path, byref(options), byref(handle))
        self.path = path
        self.sync: Union[Sync, int] = Sync(options.sync) if options.sync in (Sync.ALWAYS, Sync.NONE) else options.sync
        self._handle = handle

    # ----- lifetime ----------------------------------------------------------------------

    def _enter(self) -> Any:
        with self._cond:
            handle = self._handle
            if handle is None:
                raise InvalidArgumentError(_BAD, "the ledger is closed")
            if self._pid != os.getpid():
                raise InvalidArgumentError(_BAD, _FORKED)
            self._users += 1
            return handle

    def _leave(self) -> None:
        with self._cond:
            self._users -= 1
            if self._users == 0:
                self._cond.notify_all()

    def close(self) -> None:
        """Commits what is queued, flushes, and releases the directory (``ledger_close``).
        Waits for calls in flight on other threads; idempotent."""
        with self._cond:
            handle = self._handle
            if handle is None:
                return
            self._handle = None  # refuse new calls
            while self._users:
                self._cond.wait()
        if self._pid == os.getpid():
            self._close_fn(handle)
        # else: a forked child's copy. The engine's threads live only in the parent, so
        # ledger_close would wait for them forever; the child just forgets the handle.

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ledger.Ledger {os.fsdecode(self.path)!r} sync={getattr(self, 'sync', '?')!s} {state}>"

    # ----- submitting --------------------------------------------------------------------

    def submit(self, txs: Iterable[Any]) -> List[Union[TxResult, int]]:
        """Commits ``txs`` in order in one ``ledger_submit`` call and returns one
        :class:`TxResult` per transaction. ``txs`` holds ``Tx`` values, tuples in ``Tx``
        order, or mappings of ``Tx`` fields. A later entry may refer to an earlier one.

        Raises :class:`LedgerError` only when the call as a whole failed (then none of
        them is committed); a value that does not fit its C field raises
        :class:`InvalidArgumentError` before anything is sent.
        """
        buf = pack_txs(txs)
        n = len(buf) // TX_SIZE
        if n == 0:
            return []
        results = array.array(_U32, bytes(4 * n))
        cbuf = (c_char * len(buf)).from_buffer(buf)
        handle = self._enter()
        try:
            _call(_lib.ledger_submit, handle, ctypes.addressof(cbuf), n, results.buffer_info()[0])
        finally:
            self._leave()
        table = _RESULTS
        try:
            return [table[r] for r in results]
        except IndexError:  # a code this version does not know: keep it as an int
            return [table[r] if r < len(table) else r for r in results]

    def submit_packed(self, buf: Any, out: Any = None) -> Any:
        """Commits a packed buffer of ``ledger_tx`` in one ``ledger_submit`` call, with no
        Python-level loop, and returns the ``LEDGER_TX_*`` codes.

        ``buf`` is ``bytes``/``bytearray``/``memoryview`` (or any contiguous buffer) of a
        multiple of 80 bytes, or a numpy structured array of dtype ``ledger.TX_DTYPE``; it
        is read in place (a read-only non-``bytes`` buffer or a misaligned one is copied
        first). The codes come back as a numpy ``uint32`` array for numpy input, else as
        an ``array.array`` of uint32; or pass ``out``, any writable buffer of at least
        ``4 * count`` bytes, to have them written there (and ``out`` returned).
        """
        txs = _TxBuffer(buf)
        n = txs.count
        if out is None:
            if txs.is_numpy:
                results = numpy_module().zeros(n, dtype="=u4")  # type: ignore[union-attr]
            else:
                results = array.array(_U32, bytes(4 * n))
            target = results
        else:
            results = out
            target = out
        view = memoryview(target).cast("B") if n else None
        if view is not None:
            if view.readonly or view.nbytes < 4 * n:
                raise InvalidArgumentError(_BAD, f"out must be a writable buffer of at least {4 * n} bytes")
            rbuf = (c_char * view.nbytes).from_buffer(view)
            raddr = ctypes.addressof(rbuf)
        else:
            raddr = None
        handle = self._enter()
        try:
            _call(_lib.ledger_submit, handle, txs.address, n, raddr)
        finally:
            self._leave()
        return results

    # ----- reading -----------------------------------------------------------------------

    def lookup(self, id: int) -> TxRecord:
        """The committed transaction with this id, as it stands now; raises
        :class:`NotFoundError` when there is none."""
        id = check_id(id)
        record = _ffi.ledger_tx_record()
        handle = self._enter()
        try:
            _call(_lib.ledger_lookup, handle, _ffi.ledger_id(id & _M64, id >> 64), byref(record))
        finally:
            self._leave()
        return record_from_fields(RECORD_STRUCT.unpack_from(record))

    def get(self, id: int) -> Optional[TxRecord]:
        """As :meth:`lookup`, but None when there is no such transaction."""
        try:
            return self.lookup(id)
        except NotFoundError:
            return None

    def list(self, client_id: int, after_seq: int = 0, limit: int = DEFAULT_LIST_LIMIT) -> List[TxRecord]:
        """The client's transactions with ``seq > after_seq``, oldest first, at most
        ``limit`` of them. Page with ``after_seq=page[-1].seq``."""
        client_id = check_u64(client_id, "client_id")
        after_seq = check_u64(after_seq, "after_seq")
        limit = int(limit)
        if limit < 0:
            raise InvalidArgumentError(_BAD, f"limit must be >= 0, not {limit}")
        records = (_ffi.ledger_tx_record * limit)()
        written = c_size_t(0)
        handle = self._enter()
        try:
            _call(_lib.ledger_list, handle, client_id, after_seq, records, limit, byref(written))
        finally:
            self._leave()
        count = written.value
        if count > limit:  # the library promises at most cap
            raise InvalidArgumentError(_BAD, f"ledger_list wrote {count} records into room for {limit}")
        view = memoryview(records).cast("B")[: count * RECORD_STRUCT.size]
        return [record_from_fields(f) for f in RECORD_STRUCT.iter_unpack(view)]

    def iter_list(self, client_id: int, after_seq: int = 0, page: int = DEFAULT_LIST_LIMIT) -> Iterator[TxRecord]:
        """Every transaction of the client after ``after_seq``, fetched ``page`` at a time."""
        if page <= 0:
            raise InvalidArgumentError(_BAD, "page must be > 0")
        while True:
            records = self.list(client_id, after_seq, page)
            yield from records
            if len(records) < page:
                return
            after_seq = records[-1].seq

    def batch_close(self, client_id: int, currency: str) -> BatchSummary:
        """Closes the client's open batch in ``currency`` and returns its summary; later
        transactions count in a new batch. Raises :class:`NotFoundError` when the open
        batch holds no transaction."""
        client_id = check_u64(client_id, "client_id")
        summary = _ffi.ledger_batch_summary()
        raw = currency_arg(currency)
        handle = self._enter()
        try:
            _call(_lib.ledger_batch_close, handle, client_id, raw, byref(summary))
        finally:
            self._leave()
        return batch_from_fields(BATCH_STRUCT.unpack_from(summary))

    def batch_get(self, batch_id: int) -> BatchSummary:
        """A batch by id (open or closed); :class:`NotFoundError` when there is none."""
        batch_id = check_u64(batch_id, "batch_id")
        summary = _ffi.ledger_batch_summary()
        handle = self._enter()
        try:
            _call(_lib.ledger_batch_get, handle, batch_id, byref(summary))
        finally:
            self._leave()
        return batch_from_fields(BATCH_STRUCT.unpack_from(summary))

    def stats(self) -> Dict[str, int]:
        """The engine's memory tiers and checkpoints now (``ledger_stats_get``): the
        transactions in memory and on disk, checkpoints and merges done and failed."""
        stats = _ffi.ledger_stats()
        handle = self._enter()
        try:
            _call(_lib.ledger_stats_get, handle, byref(stats))
        finally:
            self._leave()
        return {name: getattr(stats, name) for name, _ in _ffi.ledger_stats._fields_}

    def feed(self, from_seq: int = 1, hold: bool = False) -> "Feed":
        """A change feed of the committed records with ``seq >= from_seq``, in commit
        order (``ledger_feed_open``): see :class:`Feed`. ``hold=True`` keeps the log from
        the last :meth:`Feed.confirm`\ ed seq on while the feed is open (history below
        the log's start is read from the cold tier's runs either way)."""
        from_seq = check_u64(from_seq, "from_seq")
        handle = self._enter()
        feed = _ffi.ledger_feed_p()
        try:
            _call(_lib.ledger_feed_open, handle, from_seq, _ffi.LEDGER_FEED_HOLD if hold else 0, byref(feed))
        finally:
            self._leave()
        return Feed(feed, max(from_seq, 1))

    def balance(self, client_id: int, currency: str) -> Balance:
        """The client's balance in ``currency`` (all zero before any transaction counted)."""
        client_id = check_u64(client_id, "client_id")
        balance = _ffi.ledger_balance()
        raw = currency_arg(currency)
        handle = self._enter()
        try:
            _call(_lib.ledger_balance_get, handle, client_id, raw, byref(balance))
        finally:
            self._leave()
        return balance_from_fields(BALANCE_STRUCT.unpack_from(balance))


_FEED_PAGE = 512
_WAIT_SLICE_MS = 200  # an iterator wakes this often, so Ctrl-C interrupts it


class Feed(_Owned):
    """A change feed (``ledger_feed_*``): every committed record once, in seq order.
    Transactions come as :class:`TxRecord` values as they were right after their commit;
    batch closes as :class:`BatchClose`.

    Iterate it to follow the ledger (blocking while nothing is new, ending once the
    ledger is closed and every record was returned), or call :meth:`read` with a
    timeout. A feed takes no lock the ledger's writer takes: a slow reader never slows
    writes. Use one feed from one thread at a time; :meth:`close` it (or leave a
    ``with`` block) to release it and its hold on the log.
    """

    def __init__(self, handle: Any, next_seq: int) -> None:
        self._handle: Optional[Any] = handle
        self._lock = threading.Lock()
        self._buf = (_ffi.ledger_feed_record * _FEED_PAGE)()
        self._close_fn = _lib.ledger_feed_close
        self._pid = os.getpid()
        self.next_seq = next_seq

    def read(self, max_records: int = _FEED_PAGE, timeout: float = 0.0) -> List[Union[TxRecord, BatchClose]]:
        """Up to ``max_records`` records, waiting up to ``timeout`` seconds for the first
        (0: return at once); an empty list after a timeout. Raises
        :class:`InvalidArgumentError` once the ledger is closed and everything was read."""
        if max_records <= 0:
            raise InvalidArgumentError(_BAD, "max_records must be > 0")
        timeout_ms = max(0, min(int(timeout * 1000), 0xFFFFFFFF))
        if timeout > 0 and timeout_ms == 0:
            timeout_ms = 1
        with self._lock:
            if self._handle is None:
                raise InvalidArgumentError(_BAD, "the feed is closed")
            cap = min(int(max_records), _FEED_PAGE)
            written = c_size_t(0)
            _call(_lib.ledger_feed_next, self._handle, self._buf, cap, byref(written), timeout_ms)
            count = min(written.value, cap)
            out: List[Union[TxRecord, BatchClose]] = []
            for rec in self._buf[:count]:
                if rec.kind == _ffi.LEDGER_FEED_BATCH_CLOSE:
                    out.append(BatchClose(rec.seq, batch_from_fields(BATCH_STRUCT.unpack_from(rec.batch))))
                else:
                    out.append(record_from_fields(RECORD_STRUCT.unpack_from(rec.tx)))
            if out:
                self.next_seq = (out[-1].seq) + 1
            return out

    def __iter__(self) -> Iterator[Union[TxRecord, BatchClose]]:
        while True:
            try:
                records = self.read(_FEED_PAGE, _WAIT_SLICE_MS / 1000)
            except InvalidArgumentError:
                if self._handle is None:
                    raise
                return  # the ledger is closed and every record was returned
            yield from records

    def confirm(self, seq: int) -> None:
        """Every record through ``seq`` is durably processed: a holding feed lets log
        retention remove the log below ``seq + 1``."""
        seq = check_u64(seq, "seq")
        with self._lock:
            if self._handle is None:
                raise InvalidArgumentError(_BAD, "the feed is closed")
            _call(_lib.ledger_feed_confirm, self._handle, seq)

    def close(self) -> None:
        """Releases the feed (``ledger_feed_close``); idempotent."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None and self._pid == os.getpid():
            self._close_fn(handle)
