from __future__ import annotations

import json
from typing import Any

import pytest

from opskit._core.asgi import (
    Message,
    buffered_receive,
    read_body,
    request_headers,
    send_problem,
    send_response,
)
from opskit._core.http import BodyTooLarge


def make_receive(chunks: list[bytes], *, then_disconnect: bool = True) -> Any:
    messages: list[Message] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    if then_disconnect:
        messages.append({"type": "http.disconnect"})
    consumed: list[Message] = []

    async def receive() -> Message:
        msg = messages.pop(0)
        consumed.append(msg)
        return msg

    receive.consumed = consumed  # type: ignore[attr-defined]
    return receive


def scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http", "path": "/", "headers": headers or []}


async def test_read_body_joins_chunks_and_replay_hands_the_same_bytes() -> None:
    receive = make_receive([b"ab", b"", b"cd"])
    body = await read_body(scope(), receive, max_bytes=10)
    assert body == b"abcd"
    replay = buffered_receive(body, receive)
    assert await replay() == {"type": "http.request", "body": b"abcd", "more_body": False}
    # After the replayed body, the original receive is relayed (disconnect reaches the app).
    assert (await replay())["type"] == "http.disconnect"


async def test_read_body_refuses_a_declared_length_over_the_cap_without_reading() -> None:
    receive = make_receive([b"x" * 10])
    with pytest.raises(BodyTooLarge) as info:
        await read_body(scope([(b"content-length", b"11")]), receive, max_bytes=10)
    assert info.value.limit == 10
    assert receive.consumed == []


@pytest.mark.parametrize("length", [b"\xc2\xb2", b"12x", b"-1", b"", b" 3 "])
async def test_read_body_ignores_a_content_length_that_is_not_ascii_digits(length: bytes) -> None:
    # "\xc2\xb2" is "²" in UTF-8 ("Â²" in latin-1): str.isdigit() says yes, int() says no.
    receive = make_receive([b"abc"])
    assert await read_body(scope([(b"content-length", length)]), receive, max_bytes=10) == b"abc"
    receive = make_receive([b"x" * 11])
    with pytest.raises(BodyTooLarge):
        await read_body(scope([(b"content-length", "²".encode())]), receive, max_bytes=10)


async def test_read_body_stops_at_the_first_chunk_past_the_cap() -> None:
    receive = make_receive([b"x" * 6, b"x" * 6, b"x" * 6])
    with pytest.raises(BodyTooLarge):
        await read_body(scope(), receive, max_bytes=10)
    assert len(receive.consumed) == 2  # never read the third chunk


async def test_read_body_on_disconnect_returns_what_arrived() -> None:
    async def receive() -> Message:
        return {"type": "http.disconnect"}

    assert await read_body(scope(), receive) == b""


async def test_send_problem_and_headers() -> None:
    sent: list[Message] = []

    async def send(m: Message) -> None:
        sent.append(m)

    await send_problem(send, 429, detail="later", type="urn:q", headers=[("Retry-After", "3")])
    start, body = sent
    assert start["status"] == 429
    hdrs = dict(start["headers"])
    assert hdrs[b"content-type"] == b"application/problem+json"
    assert hdrs[b"retry-after"] == b"3"
    assert int(hdrs[b"content-length"]) == len(body["body"])
    assert json.loads(body["body"])["detail"] == "later"
    sent.clear()
    await send_response(send, 200, b"ok")
    assert sent[1]["body"] == b"ok"
    assert request_headers(scope([(b"X-A", b"1")])).get("x-a") == "1"
