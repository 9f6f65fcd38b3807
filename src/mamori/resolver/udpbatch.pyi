"""Typing of the native helper built from udpbatch.c (see that file for the contract)."""

from typing import Any

MAX_COUNT: int
MAX_SIZE: int

_Addr = tuple[str, int] | tuple[str, int, int, int]

class Batch:
    truncated: int
    send_errors: int
    last_send_errno: int
    count: int
    size: int
    def __init__(
        self, count: int, size: int, local: type[tuple[Any, ...]] | None = None
    ) -> None: ...
    def recv(self, fd: Any) -> list[tuple[bytes, _Addr]]: ...
    def send(self, fd: Any, msgs: list[tuple[Any, ...]], start: int = 0) -> int: ...
    def answer(self, fd: Any, answers: list[bytes | None], start: int = 0) -> int: ...
