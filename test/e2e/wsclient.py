"""A small synchronous face for python-websockets (10.x is asyncio only).

Each Viewer runs its own event loop on a thread of its own, so frames are
read (and timestamped) the moment they arrive, whatever the test's main
thread is doing meanwhile.
"""

import asyncio
import json
import threading
import time

import websockets


class Viewer:
    """One WebSocket viewer of a widget.

    The token goes in ?access_token= unless token_in_subprotocol is set,
    in which case "bearer.<token>" is offered after the subprotocols.
    """

    def __init__(self, url, token=None, subprotocols=("livewidget",),
                 after=None, token_in_subprotocol=False):
        if after is not None:
            url += ("&" if "?" in url else "?") + "after=%d" % after
        protocols = list(subprotocols or [])
        if token is not None and token_in_subprotocol:
            protocols.append("bearer." + token)
        elif token is not None:
            url += ("&" if "?" in url else "?") + "access_token=" + token
        self.frames = []
        self.closed = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       daemon=True)
        self.thread.start()
        try:
            self.ws = self._call(lambda: websockets.connect(
                url, subprotocols=protocols or None, open_timeout=5,
                max_size=2 ** 20))
        except BaseException:
            self._stop_loop()
            raise
        self.reader = asyncio.run_coroutine_threadsafe(self._read(),
                                                       self.loop)

    def _call(self, make_awaitable, timeout=10):
        """Run make_awaitable() on the viewer's loop; wait for its result."""
        async def run():
            return await make_awaitable()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(
            timeout)

    async def _read(self):
        try:
            async for message in self.ws:
                self.frames.append((time.monotonic(), json.loads(message)))
        except websockets.ConnectionClosed:
            pass
        self.closed = (self.ws.close_code, self.ws.close_reason)

    def run(self, seconds):
        time.sleep(seconds)

    def wait_frames(self, count, timeout=5.0):
        """Wait until count frames arrived; return all of them (no times)."""
        deadline = time.monotonic() + timeout
        while (len(self.frames) < count and self.closed is None
               and time.monotonic() < deadline):
            time.sleep(0.01)
        return [frame for _, frame in self.frames]

    def wait_closed(self, timeout=5.0):
        """Wait for the server to close; return (code, reason)."""
        deadline = time.monotonic() + timeout
        while self.closed is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.closed is None:
            raise AssertionError("the server did not close the connection")
        return self.closed

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    def _stop_loop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def close(self):
        if self.closed is None:
            self._call(self.ws.close)
        self.reader.result(10)
        self._stop_loop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
