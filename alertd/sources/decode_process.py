"""The Redis event stream read and decoded in a child process, handed to the event loop in batches.

Decoding (RESP, kombu's JSON envelope, its base64 body, the body's JSON) is about 40 % of what
each event costs the daemon, and it needs nothing of the daemon's state. On a machine with a
second core a child process does it: it owns the pub/sub connection (connect, AUTH, PSUBSCRIBE,
the PING after a quiet spell), decodes each read exactly as the event loop's reader does
(alertd.sources.redis_decode), and writes each read's events to a pipe as one JSON array. The
loop then parses one compact array per read instead of a base64 envelope per message (measured:
the daemon drains 1.5x faster; bench/README.md).

The parent keeps everything else: the receive time (on its clock), StreamHealth, the malformed
count and its log lines, the back-off between attempts. A child lives for one connection: when
the connection ends, the parent marks the stream down (a gap) and starts another child after its
back-off, as it reconnects on the loop; when the child itself fails (DecoderFailed: it died, could
not start, fell silent, wrote what is not a frame), the loop decodes from then on. A child whose
parent is gone dies with it (Linux's parent-death signal, else the broken pipe of its next write,
at the latest after a quiet spell).

The pipe carries frames: a kind byte, a 4-byte little-endian length, a payload:
  S  subscribed (no payload)
  B  [messages, events, [[channel, why], ...]] for one read (channel as latin-1, exact bytes)
  P  a quiet spell (no payload): the child learns of a gone parent by writing it
  E  {"error": why, "reachable": bool}: the connection failed; the child exits after it
The broker URL (which may hold a password) reaches the child on its stdin, never in its argv.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import struct
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson

from alertd.sources.redis_decode import HEALTH_CHECK_SECONDS, Batch, read_batches, server_answered
from alertd.sources.resp import PubSubConnection, RespError

HEADER = struct.Struct("<cI")
SUBSCRIBED, BATCH, PULSE, ERROR = b"S", b"B", b"P", b"E"
PIPE_SIZE = 1 << 20  # the kernel's pipe buffer, asked for: a few reads of slack between the two
READ_LIMIT = 1 << 22  # the parent's StreamReader buffer
SILENT_AFTER = 3 * HEALTH_CHECK_SECONDS  # a child that writes nothing this long, twice, is stuck
START_TIMEOUT = 15.0  # twice, for its first frame: it starts, connects and subscribes (10 s at most)
MAX_FRAME = 1 << 30  # beyond any Redis message (proto-max-bulk-len is 512 MB): not a frame of ours
# The child's first lines: the parent's sys.path (its virtualenv, a source checkout) before any
# import of alertd, and site's own hooks (editable installs) left as they ran.
BOOTSTRAP = (
    "import json, sys; config = json.loads(sys.stdin.buffer.readline()); sys.path[:] = config['path']; "
    "from alertd.sources.decode_process import main; main(config)"
)
_NETWORK_ERRORS = (OSError, ConnectionError, TimeoutError, ValueError)


def cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its affinity (a container's cpuset, not the host's count),
    and its cgroup's CPU quota if one is set (`docker --cpus 1.5` counts as 2, 1.2 as 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cpu_quota(cgroup_root)
    return n if quota is None else max(1, min(n, math.floor(quota + 0.5)))


def _cpu_quota(root: str) -> float | None:
    """CPUs' worth of time the cgroup may use (cgroup v2 cpu.max, v1 cfs quota); None: no limit."""
    try:
        with open("/proc/self/cgroup") as f:
            own = next((line.split(":", 2)[2].strip() for line in f if line.startswith("0::")), "/")
    except OSError:
        own = "/"
    for path in (f"{root}{own.rstrip('/')}/cpu.max", f"{root}/cpu.max"):
        try:
            with open(path) as f:
                quota, period = f.read().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        except (OSError, ValueError, ZeroDivisionError):
            continue
    try:
        with open(f"{root}/cpu/cpu.cfs_quota_us") as f, open(f"{root}/cpu/cpu.cfs_period_us") as g:
            quota_us, period_us = int(f.read()), int(g.read())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


# -- the parent's side ------------------------------------------------------------------------


class DecoderFailed(ConnectionError):
    """The child itself failed (could not start, died, wrote nonsense), not its connection."""


class DecoderChild:
    """One child process subscribed to the event channels; `batches()` yields what it decodes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, url: str, pattern: str) -> DecoderChild:
        """Start a child and wait until it has subscribed; raises its error as the loop's reader
        would (RespError when the server answered and refused, ConnectionError otherwise), and
        DecoderFailed when the child itself could not run."""
        if not sys.executable:
            raise DecoderFailed("no Python executable to start a decoder process with")
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # nothing from the working directory before BOOTSTRAP has set sys.path
                "-c",
                BOOTSTRAP,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=READ_LIMIT,
            )
        except OSError as e:
            raise DecoderFailed(f"the decoder process could not start: {e}") from None
        child = cls(proc)
        try:
            assert proc.stdin is not None
            # The child imports alertd from where this process did: the same sys.path.
            config = {"url": url, "pattern": pattern, "parent": os.getpid(), "path": [str(p) for p in sys.path]}
            proc.stdin.write(orjson.dumps(config) + b"\n")
            await proc.stdin.drain()
            proc.stdin.close()
            kind, payload = await child._frame(START_TIMEOUT)
            if kind != SUBSCRIBED:
                child._raise(kind, payload)
        except (BrokenPipeError, ConnectionResetError) as e:
            await child.close()
            raise DecoderFailed(f"the decoder process exited at once ({e})") from None
        except BaseException:
            await child.close()
            raise
        return child

    async def _frame(self, timeout: float) -> tuple[bytes, bytes]:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            try:
                # Only the header is timed: a timeout inside a frame would lose its place in the pipe.
                async with asyncio.timeout(timeout):
                    header = await stdout.readexactly(HEADER.size)
            except TimeoutError:
                # The child writes at least every HEALTH_CHECK_SECONDS. Once more before giving
                # up: after this process was suspended (SIGSTOP, a paused VM) the timer may
                # fire before the data that is already there is read.
                async with asyncio.timeout(timeout):
                    header = await stdout.readexactly(HEADER.size)
            kind, size = HEADER.unpack(header)
            if size > MAX_FRAME:
                raise DecoderFailed(f"the decoder process sent a frame of {size} bytes")
            return kind, (await stdout.readexactly(size)) if size else b""
        except asyncio.IncompleteReadError:
            code = await self.proc.wait()
            raise DecoderFailed(f"the decoder process exited (code {code})") from None
        except TimeoutError:
            raise DecoderFailed(f"the decoder process wrote nothing for {2 * timeout:g}s") from None

    def _raise(self, kind: bytes, payload: bytes) -> None:
        if kind == ERROR:
            try:
                e = orjson.loads(payload)
                error, reachable = str(e["error"]), bool(e["reachable"])
            except (ValueError, TypeError, KeyError):
                raise DecoderFailed("the decoder process sent an error frame that does not parse") from None
            raise (RespError if reachable else ConnectionError)(error)
        raise DecoderFailed(f"the decoder process sent a frame of kind {kind!r}")

    async def batches(self) -> AsyncIterator[Batch]:
        loads = orjson.loads
        while True:
            kind, payload = await self._frame(SILENT_AFTER)
            if kind == BATCH:
                try:
                    messages, events, bad = loads(payload)
                    malformed = [(channel.encode("latin-1"), why) for channel, why in bad]
                except (ValueError, TypeError, AttributeError, UnicodeEncodeError):
                    # Our own child wrote it: a bug there, not bad input. The loop takes over.
                    raise DecoderFailed("the decoder process sent a batch that does not parse") from None
                yield messages, events, malformed
            elif kind == PULSE:
                yield 0, [], []
            else:
                self._raise(kind, payload)

    async def close(self) -> None:
        # SIGKILL: the child keeps nothing worth a goodbye, and it ignores SIGTERM (below).
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


# -- the child's side -------------------------------------------------------------------------


_out = 1  # the frames' file descriptor; main() moves it off fd 1


def _send(kind: bytes, payload: bytes = b"") -> None:
    data = memoryview(HEADER.pack(kind, len(payload)) + payload)
    while data:
        data = data[os.write(_out, data) :]


def _encode(batch: Batch) -> bytes:
    messages, events, bad = batch
    malformed = [[channel.decode("latin-1"), why] for channel, why in bad]
    try:
        return orjson.dumps([messages, events, malformed])
    except orjson.JSONEncodeError:
        # Not reached by what orjson parsed (it writes back all it reads), but an event that
        # cannot be carried is counted as malformed, never silently dropped with its batch.
        kept: list[dict[str, Any]] = []
        for event in events:
            try:
                orjson.dumps(event)
            except orjson.JSONEncodeError as e:
                malformed.append(["", f"event not re-encodable: {e}"])
            else:
                kept.append(event)
        return orjson.dumps([messages, kept, malformed])


async def _serve(url: str, pattern: str) -> None:
    try:
        conn = await PubSubConnection.open(url)
    except _NETWORK_ERRORS as e:
        return _failed(e)
    try:
        await conn.psubscribe(pattern)
        _send(SUBSCRIBED)
        async for batch in read_batches(conn):
            # A blocking write: while the parent is behind, this process waits and Redis buffers
            # the stream for it, as it would for the loop's own reader.
            if batch[0]:
                _send(BATCH, _encode(batch))
            else:
                _send(PULSE)
    except _NETWORK_ERRORS as e:
        if isinstance(e, BrokenPipeError):
            return  # the parent is gone
        _failed(e)
    finally:
        with contextlib.suppress(*_NETWORK_ERRORS):
            await conn.close()


def _failed(e: BaseException) -> None:
    error = {"error": str(e) or type(e).__name__, "reachable": server_answered(e)}
    with contextlib.suppress(BrokenPipeError):
        _send(ERROR, orjson.dumps(error))


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            libc.prctl(15, b"alertd-decoder")  # PR_SET_NAME: what top, ps -e and pgrep show
    if os.getppid() != parent:
        sys.exit(0)  # the parent died before the signal was asked for


def main(config: dict[str, Any]) -> None:
    """The child: `config` is what the parent wrote on its stdin (BOOTSTRAP reads it)."""
    global _out
    _die_with(int(config["parent"]))
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the parent decides
    # when this process ends (it kills it), so that a shutdown is not mistaken for its failure.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The frames get a descriptor of their own; anything printed by mistake goes to stderr.
    _out = os.dup(1)
    os.dup2(2, 1)
    try:
        import fcntl

        fcntl.fcntl(_out, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass  # the default pipe (64 KiB) only means fewer reads in flight
    asyncio.run(_serve(str(config["url"]), str(config["pattern"])))
