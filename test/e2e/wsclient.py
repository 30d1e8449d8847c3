"""A small synchronous face for python-websockets (10.x is asyncio only)."""

import asyncio
import json
import time

import websockets


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__("closed with %s: %s" % (code, reason))
        self.code = code
        self.reason = reason


class Viewer:
    """One WebSocket viewer, driven from synchronous test code.

    Frames are collected in the background as soon as the connection is
    open, so a test can publish and then ask for what arrived.
    """

    def __init__(self, url, token=None, subprotocols=None, after=None,
                 query_token=False):
        self.loop = asyncio.new_event_loop()
        if after is not None:
            url += ("&" if "?" in url else "?") + "after=%d" % after
        if token is not None and query_token:
            url += ("&" if "?" in url else "?") + "access_token=" + token
        elif token is not None and subprotocols is None:
            subprotocols = ["livewidget", "bearer." + token]
        self.frames = []
        self.closed = None
        self.ws = self.loop.run_until_complete(
            websockets.connect(url, subprotocols=subprotocols,
                               open_timeout=5, max_size=2 ** 20))
        self.reader = self.loop.create_task(self._read())

    async def _read(self):
        try:
            async for message in self.ws:
                self.frames.append((time.monotonic(), json.loads(message)))
        except websockets.ConnectionClosed:
            pass
        self.closed = (self.ws.close_code, self.ws.close_reason)

    def run(self, seconds):
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def wait_frames(self, count, timeout=5.0):
        """Wait until count frames arrived; return all of them (no times)."""
        deadline = time.monotonic() + timeout
        while len(self.frames) < count and self.closed is None:
            if time.monotonic() > deadline:
                break
            self.run(0.02)
        return [frame for _, frame in self.frames]

    def wait_closed(self, timeout=5.0):
        """Wait for the server to close; return (code, reason)."""
        deadline = time.monotonic() + timeout
        while self.closed is None and time.monotonic() < deadline:
            self.run(0.02)
        if self.closed is None:
            raise AssertionError("the server did not close the connection")
        return self.closed

    @property
    def subprotocol(self):
        return self.ws.subprotocol

    def close(self):
        if self.closed is None:
            self.loop.run_until_complete(self.ws.close())
            self.loop.run_until_complete(self.reader)
        self.loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
