"""opskit.pii vs raw AESGCM, Fernet / MultiFernet and Tink's AEAD, in one run.

1. Round trip (encrypt + decrypt) of 64 B and 1 KiB values: opskit tokens
   (str, context dict) and bytes (Tink wire format), raw ``AESGCM`` with nonce
   generation and the same associated data (the same AAD bytes; and the same
   JSON built per call from the same dict), ``Fernet``, and Tink's AEAD.
2. Decrypt alone: opskit vs ``MultiFernet`` decrypting a token of its third key
   (it tries each key in turn) and vs Fernet under its only key.
3. ``encrypt_bytes`` alone vs Tink's ``Aead.encrypt`` (same keyset, same AAD).
4. Envelope: encrypt of 64 B with a fresh DEK each time vs ``dek_reuse``
   (LocalKEK, in process; then AwsKmsKEK through moto's KMS server on 127.0.0.1
   when moto is installed: the KMS round trip is what dek_reuse saves).
5. Blind index vs a bare HMAC-SHA256 truncated to the same bits.
Every ratio is the median over rounds of each round's own ratio (rounds in
parallel, so a speed change of the shared machine hits both sides alike).
Targets: token round trip >= 8x faster than Fernet and within 1.5x of raw
AESGCM; encrypt_bytes within 1.2x of Tink's AEAD.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import socket
import statistics
import sys
from base64 import urlsafe_b64decode, urlsafe_b64encode
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import CollectorRegistry

from _bench import by_round, count_instructions, paired_ratio
from opskit.pii import BlindIndex, EnvelopeCipher, Keyring, LocalKEK, PIICipher

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
CTX = {"tenant": "acme", "field": "phone"}
AAD = json.dumps(CTX, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def med(times: dict[str, list[float]], name: str) -> str:
    return f"{statistics.median(times[name]) / 1000:8.2f} us"


def show(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    for name in times:
        print(f"  {name:44s} {med(times, name)}")


def round_trips(size: int) -> dict[str, list[float]]:
    import tink
    from tink import aead, secret_key_access

    aead.register()
    ring = Keyring.generate()
    pii = PIICipher(ring, registry=CollectorRegistry())
    text = "x" * size
    data = text.encode()
    key = os.urandom(32)
    raw = AESGCM(key)
    fernet = Fernet(Fernet.generate_key())
    handle = tink.json_proto_keyset_format.parse(ring.to_tink_json(), secret_key_access.TOKEN)
    tk = handle.primitive(aead.Aead)
    urandom = os.urandom
    dumps = json.dumps

    def opskit_token() -> Any:
        return pii.decrypt(pii.encrypt(text, CTX), CTX)

    def opskit_bytes() -> Any:
        return pii.decrypt_bytes(pii.encrypt_bytes(data, AAD), AAD)

    def raw_aesgcm() -> Any:
        nonce = urandom(12)
        ct = raw.encrypt(nonce, data, AAD)
        return raw.decrypt(nonce, ct, AAD)

    def raw_aesgcm_json() -> Any:
        ad = dumps(CTX, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        nonce = urandom(12)
        ct = raw.encrypt(nonce, text.encode(), ad)
        return raw.decrypt(nonce, ct, ad).decode()

    def raw_aesgcm_token() -> Any:
        nonce = urandom(12)
        token = urlsafe_b64encode(nonce + raw.encrypt(nonce, text.encode(), AAD)).rstrip(b"=")
        blob = urlsafe_b64decode(token + b"=" * (-len(token) % 4))
        return raw.decrypt(blob[:12], blob[12:], AAD).decode()

    def fernet_rt() -> Any:
        return fernet.decrypt(fernet.encrypt(data))

    def tink_rt() -> Any:
        return tk.decrypt(tk.encrypt(data, AAD), AAD)

    assert opskit_token() == text and opskit_bytes() == data and tink_rt() == data
    n = 4000 if size <= 64 else 2000
    return by_round(
        {
            "opskit token (str, context dict)": (opskit_token, n),
            "opskit bytes (AAD bytes)": (opskit_bytes, n),
            "raw AESGCM (same AAD bytes)": (raw_aesgcm, n),
            "raw AESGCM (JSON AAD built per call)": (raw_aesgcm_json, n),
            "raw AESGCM + base64url text (same AAD)": (raw_aesgcm_token, n),
            "Fernet": (fernet_rt, n // 4),
            "Tink AEAD": (tink_rt, n),
        },
        ROUNDS,
    )


def decrypts() -> dict[str, list[float]]:
    pii = PIICipher(Keyring.generate(), registry=CollectorRegistry())
    token = pii.encrypt("x" * 64, CTX)
    keys = [Fernet.generate_key() for _ in range(3)]
    multi = MultiFernet([Fernet(k) for k in keys])
    third = Fernet(keys[2]).encrypt(b"x" * 64)
    only = Fernet(keys[0])
    first = only.encrypt(b"x" * 64)
    return by_round(
        {
            "opskit decrypt (token)": (lambda: pii.decrypt(token, CTX), 4000),
            "Fernet decrypt": (lambda: only.decrypt(first), 1000),
            "MultiFernet decrypt, third key": (lambda: multi.decrypt(third), 1000),
        },
        ROUNDS,
    )


def encrypt_bytes_vs_tink() -> dict[str, list[float]]:
    import tink
    from tink import aead, secret_key_access

    ring = Keyring.generate()
    pii = PIICipher(ring, registry=CollectorRegistry())
    handle = tink.json_proto_keyset_format.parse(ring.to_tink_json(), secret_key_access.TOKEN)
    tk = handle.primitive(aead.Aead)
    data = b"x" * 64
    return by_round(
        {
            "opskit encrypt_bytes 64 B": (lambda: pii.encrypt_bytes(data, AAD), 5000),
            "Tink Aead.encrypt 64 B": (lambda: tk.encrypt(data, AAD), 5000),
        },
        ROUNDS,
    )


def envelopes() -> dict[str, list[float]]:
    kek = LocalKEK(Keyring.generate())
    fresh = EnvelopeCipher(kek, registry=CollectorRegistry())
    reuse = EnvelopeCipher(kek, dek_reuse=(10_000, 300.0), registry=CollectorRegistry())
    data = b"x" * 64
    return by_round(
        {
            "envelope encrypt, LocalKEK, DEK per message": (
                lambda: fresh.encrypt_bytes(data, AAD), 1000),
            "envelope encrypt, LocalKEK, dek_reuse": (lambda: reuse.encrypt_bytes(data, AAD), 4000),
        },
        ROUNDS,
    )  # fmt: skip


def aws_envelopes() -> dict[str, list[float]] | None:
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        from opskit.pii import AwsKmsKEK

        client = boto3.client("kms", endpoint_url=f"http://127.0.0.1:{port}",
                              region_name="us-east-1", aws_access_key_id="x",
                              aws_secret_access_key="x")  # fmt: skip
        arn = client.create_key()["KeyMetadata"]["Arn"]
        kek = AwsKmsKEK(client, arn)
        fresh = EnvelopeCipher(kek, registry=CollectorRegistry())
        reuse = EnvelopeCipher(kek, dek_reuse=(10_000, 300.0), registry=CollectorRegistry())
        data = b"x" * 64
        return by_round(
            {
                "envelope encrypt, moto KMS, DEK per message": (
                    lambda: fresh.encrypt_bytes(data, AAD), 40),
                "envelope encrypt, moto KMS, dek_reuse": (
                    lambda: reuse.encrypt_bytes(data, AAD), 4000),
            },
            max(3, ROUNDS // 2),
        )  # fmt: skip
    finally:
        server.stop()


def blind() -> dict[str, list[float]]:
    key = BlindIndex.generate_key()
    idx = BlindIndex(key, name="email", bits=32)
    value = "alice@example.com"
    sha256 = hashlib.sha256

    def bare() -> str:
        return hmac.new(key, value.encode(), sha256).digest()[:4].hex()

    return by_round(
        {
            "BlindIndex.compute (no context)": (lambda: idx.compute(value), 5000),
            "BlindIndex.compute (context dict)": (lambda: idx.compute(value, CTX), 5000),
            "bare hmac.new(...).digest()[:4].hex()": (bare, 5000),
        },
        ROUNDS,
    )


def _cases() -> dict[str, Any]:
    """Single operations for the instruction counts (one process per case)."""
    import tink
    from tink import aead, secret_key_access

    aead.register()
    ring = Keyring.generate()
    pii = PIICipher(ring, registry=CollectorRegistry())
    raw = AESGCM(os.urandom(32))
    fernet = Fernet(Fernet.generate_key())
    tk = tink.json_proto_keyset_format.parse(
        ring.to_tink_json(), secret_key_access.TOKEN
    ).primitive(aead.Aead)
    cases: dict[str, Any] = {}
    for size in (64, 1024):
        text = "x" * size
        data = text.encode()

        def raw_rt(data: bytes = data) -> Any:
            nonce = os.urandom(12)
            return raw.decrypt(nonce, raw.encrypt(nonce, data, AAD), AAD)

        def raw_token(text: str = text) -> Any:
            nonce = os.urandom(12)
            token = urlsafe_b64encode(nonce + raw.encrypt(nonce, text.encode(), AAD)).rstrip(b"=")
            blob = urlsafe_b64decode(token + b"=" * (-len(token) % 4))
            return raw.decrypt(blob[:12], blob[12:], AAD).decode()

        cases[f"raw AESGCM round trip {size} B"] = raw_rt
        cases[f"raw AESGCM + base64url round trip {size} B"] = raw_token
        cases[f"opskit token round trip {size} B"] = (
            lambda text=text: pii.decrypt(pii.encrypt(text, CTX), CTX))  # fmt: skip
        cases[f"opskit bytes round trip {size} B"] = (
            lambda data=data: pii.decrypt_bytes(pii.encrypt_bytes(data, AAD), AAD))  # fmt: skip
        cases[f"Fernet round trip {size} B"] = (
            lambda data=data: fernet.decrypt(fernet.encrypt(data)))  # fmt: skip
        cases[f"Tink AEAD round trip {size} B"] = (
            lambda data=data: tk.decrypt(tk.encrypt(data, AAD), AAD))  # fmt: skip
    cases["opskit encrypt_bytes 64 B"] = lambda: pii.encrypt_bytes(b"x" * 64, AAD)
    cases["Tink Aead.encrypt 64 B"] = lambda: tk.encrypt(b"x" * 64, AAD)
    return cases


def _count_main(case: str, n: int) -> None:
    fn = _cases()[case]
    for _ in range(n):
        fn()


def _instructions(valgrind: str, case: str, n: int) -> int:
    return count_instructions(valgrind, __file__, "--count", case, str(n))


def instruction_counts() -> dict[str, float] | None:
    """Instructions per operation (valgrind): free of the machine's load."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    valgrind = shutil.which("valgrind")
    if valgrind is None or os.environ.get("BENCH_NO_VALGRIND"):
        return None
    names = list(_cases())
    low, high = 100, 1100

    def per_op(case: str) -> float:
        return (_instructions(valgrind, case, high) - _instructions(valgrind, case, low)) / (
            high - low
        )

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(names, pool.map(per_op, names), strict=True))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def ratio_value(times: dict[str, list[float]], name: str, base: str) -> float:
    return statistics.median(a / b for a, b in zip(times[name], times[base], strict=True))


def main() -> None:
    print(
        f"opskit.pii benchmark: Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {ROUNDS} rounds (medians; a shared machine is noisy)"
    )
    results = []
    for size in (64, 1024):
        t = round_trips(size)
        show(f"Round trip (encrypt + decrypt), {size} B", t)
        peers = ("Fernet", "raw AESGCM (same AAD bytes)", "raw AESGCM (JSON AAD built per call)",
                 "raw AESGCM + base64url text (same AAD)", "Tink AEAD")  # fmt: skip
        for peer in peers:
            print(
                f"  token / {peer:38s} {paired_ratio(t, 'opskit token (str, context dict)', peer)}"
            )
        for peer in ("raw AESGCM (same AAD bytes)", "Tink AEAD"):
            print(f"  bytes / {peer:38s} {paired_ratio(t, 'opskit bytes (AAD bytes)', peer)}")
        fernet_x = 1 / ratio_value(t, "opskit token (str, context dict)", "Fernet")
        raw_x = ratio_value(t, "opskit token (str, context dict)", "raw AESGCM (same AAD bytes)")
        raw_json_x = ratio_value(t, "opskit token (str, context dict)",
                                 "raw AESGCM (JSON AAD built per call)")  # fmt: skip
        results.append((f"{size} B token round trip >= 8x faster than Fernet",
                        f"{fernet_x:.1f}x", fernet_x >= 8))  # fmt: skip
        results.append((f"{size} B token round trip within 1.5x of raw AESGCM (same AAD bytes)",
                        f"{raw_x:.2f}x", raw_x <= 1.5))  # fmt: skip
        results.append((f"{size} B token round trip within 1.5x of raw AESGCM (JSON AAD per call)",
                        f"{raw_json_x:.2f}x", raw_json_x <= 1.5))  # fmt: skip
    d = decrypts()
    show("Decrypt alone, 64 B", d)
    print(
        f"  opskit / MultiFernet third key             "
        f"{paired_ratio(d, 'opskit decrypt (token)', 'MultiFernet decrypt, third key')}"
    )
    print(
        f"  MultiFernet third key / Fernet             "
        f"{paired_ratio(d, 'MultiFernet decrypt, third key', 'Fernet decrypt')}"
    )
    e = encrypt_bytes_vs_tink()
    show("encrypt_bytes vs Tink", e)
    print(
        f"  opskit / Tink                              "
        f"{paired_ratio(e, 'opskit encrypt_bytes 64 B', 'Tink Aead.encrypt 64 B')}"
    )
    tink_x = ratio_value(e, "opskit encrypt_bytes 64 B", "Tink Aead.encrypt 64 B")
    results.append(("encrypt_bytes within 1.2x of Tink's AEAD", f"{tink_x:.2f}x", tink_x <= 1.2))
    v = envelopes()
    show("Envelope, 64 B", v)
    print(f"  DEK per message / dek_reuse                {paired_ratio(v, *list(v)[:2])}")
    a = aws_envelopes()
    if a is not None:
        show("Envelope through moto's KMS server, 64 B", a)
        print(f"  DEK per message / dek_reuse                {paired_ratio(a, *list(a)[:2])}")
    else:
        print("\n(moto not installed: no KMS envelope figures)", file=sys.stderr)
    b = blind()
    show("Blind index, 32 bits", b)
    print(f"  compute / bare HMAC                        {paired_ratio(b, *list(b)[::2])}")
    counts = instruction_counts()
    if counts is not None:
        print("\nInstructions per operation (valgrind; the machine's load does not change them)")
        for name, n in counts.items():
            print(f"  {name:44s} {n:10.0f}")
        for size in (64, 1024):
            tok = counts[f"opskit token round trip {size} B"]
            for peer in ("Fernet", "raw AESGCM", "raw AESGCM + base64url", "Tink AEAD"):
                ratio = tok / counts[f"{peer} round trip {size} B"]
                print(f"  token {size} B / {peer:30s} {ratio:6.2f}x")
            byt = counts[f"opskit bytes round trip {size} B"]
            print(f"  bytes {size} B / raw AESGCM                     "
                  f"{byt / counts[f'raw AESGCM round trip {size} B']:6.2f}x")  # fmt: skip
        enc = counts["opskit encrypt_bytes 64 B"] / counts["Tink Aead.encrypt 64 B"]
        print(f"  encrypt_bytes 64 B / Tink Aead.encrypt       {enc:6.2f}x")
    print("\nTargets")
    for name, value, ok in results:
        print(f"  {name:72s} {value:>7s}  {verdict(ok)}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--count":
        _count_main(sys.argv[2], int(sys.argv[3]))
    else:
        main()
