"""One HTTP request bounded as a whole, for the KFP client (kubeflow/client.py): an overall deadline
and a cap on the body it reads. urllib3's read timeout is per socket read, so a server that sends a
byte every few seconds never trips it; and a preloaded body is read whole into memory, however large.

A `Deadline` shuts the socket of the connection its request uses down when it passes, so a read
blocked in it ends at once (as an urllib3 error; `Deadline.passed` then says why). `bound(pool_manager)`
makes the manager's connections report to the deadline of the request in progress (per thread) and
its requests read at most MAX_BODY_BYTES of a body (`TooLarge` beyond)."""
import socket
import threading

from urllib3 import connection, connectionpool

MAX_BODY_BYTES = 32 * 1024 * 1024  # a KFP answer echoes the pipeline spec: a few MB at most
CHUNK = 64 * 1024
_current = threading.local()  # the Deadline of this thread's request in progress


class TooLarge(Exception):
    """A body over the cap: `length` is its Content-Length when it announced one (else None)."""

    def __init__(self, length):
        super().__init__(length)
        self.length = length


def _shutdown(conn):
    sock = getattr(conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already
            pass


class Deadline:
    """`with Deadline(seconds):` around one request made in this thread."""

    def __init__(self, seconds):
        self.passed, self._conn, self._lock = False, None, threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def __enter__(self):
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        _current.deadline = None

    def _cut(self):
        with self._lock:
            self.passed = True
            _shutdown(self._conn)

    def watch(self, conn):
        """`conn` carries the request now (cut at once if the deadline passed while it connected)."""
        with self._lock:
            self._conn = conn
            if self.passed:
                _shutdown(conn)


def _watched(conn):
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(conn)


class _Watched:
    def request(self, *args, **kwargs):
        _watched(self)
        return super().request(*args, **kwargs)

    def getresponse(self, *args, **kwargs):
        _watched(self)  # connected by now: a deadline passed meanwhile cuts it here
        return super().getresponse(*args, **kwargs)


class _HTTPConnection(_Watched, connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, connection.HTTPSConnection):
    pass


class _HTTPPool(connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def read_body(response, cap=MAX_BODY_BYTES):
    """The body of an urllib3 response opened with preload_content=False, at most `cap` bytes."""
    length = (response.headers.get("Content-Length") or "").strip()
    if length.isdigit() and int(length) > cap:
        raise TooLarge(int(length))
    chunks, size = [], 0
    while True:
        chunk = response.read(CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise TooLarge(None)
        chunks.append(chunk)


class Answer:
    """What kfp_server_api's REST client reads of an urllib3 response, its body read (bounded)."""

    def __init__(self, response, data):
        self.status, self.reason, self.data, self.headers = response.status, response.reason, data, response.headers

    def getheaders(self):
        return self.headers

    def getheader(self, name, default=None):
        return self.headers.get(name, default)


class BoundedPoolManager:
    """An urllib3 PoolManager whose connections report to the request's Deadline and whose requests
    read at most `cap` bytes of a body."""

    def __init__(self, pool_manager, cap=MAX_BODY_BYTES):
        pool_manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self._pool_manager, self.cap = pool_manager, cap

    def request(self, method, url, preload_content=True, **kwargs):
        r = self._pool_manager.request(method, url, preload_content=False, **kwargs)
        try:
            data = read_body(r, self.cap)
        except BaseException:
            r.close()  # the rest is not read: the connection is not reused
            raise
        r.release_conn()
        return Answer(r, data)

    def __getattr__(self, name):
        return getattr(self._pool_manager, name)
