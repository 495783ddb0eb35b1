"""A rendezvous for the processes of a run on one host that listens on 127.0.0.1 only.

torch's elastic launcher hosts its rendezvous and worker stores as `TCPStore` servers, and a
`TCPStore` listens on every interface (`*`) whatever host name it is given, unless it is handed a
socket already bound. This rendezvous (one node, rank 0) hosts a single store on such a socket bound
to 127.0.0.1, and the ranks use it as their store too (`use_agent_store`), so nothing of a
single-host run can be reached from another machine.
"""

from __future__ import annotations

import datetime
import socket

from torch.distributed import PrefixStore, TCPStore
from torch.distributed.elastic.rendezvous import RendezvousHandler, RendezvousInfo, RendezvousParameters
from torch.distributed.elastic.rendezvous.api import RendezvousStoreInfo, rendezvous_handler_registry

LOOPBACK = "127.0.0.1"
BACKEND = "gem-transfer-loopback"  # the `rdzv_backend` name `register` gives it


class LoopbackRendezvous(RendezvousHandler):
    """The rendezvous of one node with itself: a store on 127.0.0.1, created at the first round."""

    def __init__(self, run_id: str, timeout_s: int):
        self.run_id = run_id
        self.timeout = datetime.timedelta(seconds=timeout_s)
        self.listener: socket.socket | None = None
        self.store: TCPStore | None = None

    def get_backend(self) -> str:
        return BACKEND

    @property
    def use_agent_store(self) -> bool:
        return True

    def next_rendezvous(self) -> RendezvousInfo:
        if self.store is None:
            self.listener = socket.create_server((LOOPBACK, 0))
            port = self.listener.getsockname()[1]
            self.store = TCPStore(LOOPBACK, port, is_master=True, timeout=self.timeout, wait_for_workers=False, multi_tenant=True,
                                  master_listen_fd=self.listener.fileno())
        return RendezvousInfo(PrefixStore(self.run_id, self.store), 0, 1, RendezvousStoreInfo(LOOPBACK, self.store.port))

    def is_closed(self) -> bool:
        return False

    def set_closed(self) -> None:
        pass

    def num_nodes_waiting(self) -> int:
        return 0

    def get_run_id(self) -> str:
        return self.run_id

    def shutdown(self) -> bool:
        return True


def _create(params: RendezvousParameters) -> LoopbackRendezvous:
    return LoopbackRendezvous(params.run_id, int(params.config["timeout"]))


def register() -> str:
    """Make the rendezvous known to torch's elastic launcher (again: a no-op); → its backend name."""
    rendezvous_handler_registry.register(BACKEND, _create)
    return BACKEND
