"""An nbclient NotebookClient that cannot miss a kernel message it was waiting for.

nbclient waits for the kernel's reply with `await channel.get_msg(timeout)`, one zmq.asyncio
poll for up to the cell timeout. Seen here (4 times in ~40 notebook runs, always a notebook with
widget cells, nbclient issue 312): the kernel has replied and sits idle, the client sits idle too,
and the cell fails only when its timeout runs out. A fresh poll sees a waiting message at once, so
each wait here is a series of polls of at most `STEP` seconds up to the same deadline.
"""

from __future__ import annotations

import time
from queue import Empty

from nbclient import NotebookClient

STEP = 1.0  # seconds: the longest a message that has arrived can go unnoticed


class PollingChannel:
    """A kernel client channel whose get_msg polls in steps of at most STEP seconds."""

    def __init__(self, channel):
        self.channel = channel

    async def get_msg(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = STEP if deadline is None else max(0.0, min(STEP, deadline - time.monotonic()))
            try:
                return await self.channel.get_msg(timeout=wait)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def __getattr__(self, name):  # everything else (is_alive, stop, msg_ready, ...): the channel's own
        return getattr(self.channel, name)


class PatientNotebookClient(NotebookClient):
    """NotebookClient whose shell and iopub channels are PollingChannels."""

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        kc._shell_channel = PollingChannel(kc.shell_channel)
        kc._iopub_channel = PollingChannel(kc.iopub_channel)
        return kc
