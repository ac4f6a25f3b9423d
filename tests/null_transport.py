"""A transport that delivers nothing: for hosts tested alone, with no peer to reach."""


class NullTransport:
    def start(self, deliver, unreachable) -> None:
        pass

    def set_peers(self, peers) -> None:
        pass

    def send(self, to, message, send_id=0) -> None:
        pass

    def close(self) -> None:
        pass
