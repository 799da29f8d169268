"""A TCP proxy that can freeze the connections through it: a hung server or a network
partition, made deterministically on loopback."""

from __future__ import annotations

import select
import socket
import threading
import time


class FreezableProxy:
    """A TCP proxy to ``pg``; ``freeze()`` stops every connection open at that moment
    (bytes are no longer forwarded either way, as with a frozen server or a partition),
    while new connections pass."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = int(self.lsock.getsockname()[1])
        self.frozen: list[threading.Event] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            flag = threading.Event()
            self.frozen.append(flag)
            threading.Thread(target=self._pump, args=(client, upstream, flag), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, frozen: threading.Event) -> None:
        with a, b:
            while not self.stopped.is_set():
                if frozen.is_set():
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.05)
                if frozen.is_set():
                    continue
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)

    def freeze(self) -> None:
        for flag in self.frozen:
            flag.set()

    def close(self) -> None:
        self.stopped.set()
        self.lsock.close()
