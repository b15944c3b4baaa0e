"""Addresses a server listens on and a client connects to.

``tcp://HOST:PORT`` (an IPv6 host in brackets: ``tcp://[::1]:7420``; port 0 asks
for any free port) or ``unix:/path/to.sock``. A server lists what it bound in
the same form, so a client can connect to exactly that.
"""

from __future__ import annotations

import ipaddress
from typing import Final

import attrs

from .errors import InvalidArgument, describe

__all__ = ["DEFAULT_ADDRESS", "TcpAddress", "UnixAddress", "parse_address"]

DEFAULT_ADDRESS: Final = "tcp://127.0.0.1:7420"


@attrs.frozen
class TcpAddress:
    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can reach it (a token is required otherwise)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name other than localhost: it may resolve anywhere
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


@attrs.frozen
class UnixAddress:
    path: str

    @property
    def is_loopback(self) -> bool:
        return True

    def __str__(self) -> str:
        return f"unix:{self.path}"


def parse_address(text: object) -> TcpAddress | UnixAddress:
    """The address ``text`` names; ``InvalidArgument`` if it names none.

    >>> parse_address("tcp://127.0.0.1:7420")
    TcpAddress(host='127.0.0.1', port=7420)
    >>> parse_address("unix:/tmp/store.sock")
    UnixAddress(path='/tmp/store.sock')
    """
    if type(text) is not str:
        raise InvalidArgument(f"an address must be a str, got {describe(text)}")
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if path.startswith("//"):
            path = path[2:]
        if not path or "\x00" in path:
            raise InvalidArgument(f"a unix address needs a path: unix:/path/to.sock, got {text!r}")
        return UnixAddress(path)
    if text.startswith("tcp://"):
        rest = text[len("tcp://") :]
        if rest.startswith("["):
            host, bracket, tail = rest[1:].partition("]")
            port_text = tail[1:] if bracket and tail.startswith(":") else ""
        else:
            host, _, port_text = rest.rpartition(":")
        if host and port_text.isdecimal() and int(port_text) <= 65535:
            return TcpAddress(host, int(port_text))
    raise InvalidArgument(
        f"address {describe(text)} is neither tcp://HOST:PORT nor unix:/path/to.sock"
    )
