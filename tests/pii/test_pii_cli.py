"""``opskit pii``: the CLI round trip through the real command, and its failures."""

from __future__ import annotations

import os
import subprocess
import sys

from opskit.pii import Keyring, PIICipher
from pii._pii import assert_no_leak, key_bytes, tink_aead


def opskit(*args: str, stdin: str = "", env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([sys.executable, "-m", "opskit.cli", "pii", *args], input=stdin,
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=60)  # fmt: skip


def test_keyring_commands_round_trip() -> None:
    gen = opskit("keygen")
    assert gen.returncode == 0 and gen.stderr == ""
    ring = Keyring.from_json(gen.stdout)
    added = opskit("add-key", stdin=gen.stdout)
    assert added.returncode == 0
    ring2 = Keyring.from_json(added.stdout)
    assert ring2.primary_id == ring.primary_id and len(ring2.key_ids) == 2
    assert str(ring2.newest_id) in added.stderr
    promoted = opskit("promote", str(ring2.newest_id), stdin=added.stdout)
    ring3 = Keyring.from_json(promoted.stdout)
    assert ring3.primary_id == ring2.newest_id
    retired = opskit("retire", str(ring.primary_id), "--keyring-env", "PII_RING",
                     env={"PII_RING": promoted.stdout})  # fmt: skip
    assert Keyring.from_json(retired.stdout).key_ids == (ring3.primary_id,)
    tink = opskit("to-tink", stdin=promoted.stdout)
    assert tink_aead(tink.stdout).decrypt(PIICipher(ring3).encrypt_bytes(b"v"), b"") == b"v"
    back = opskit("from-tink", stdin=tink.stdout)
    assert Keyring.from_json(back.stdout) == ring3
    for proc in (gen, added, promoted, retired, tink, back):
        assert_no_leak([proc.stderr], key_bytes(gen.stdout) + key_bytes(added.stdout))


def test_encrypt_decrypt_round_trip_with_context() -> None:
    ring = Keyring.generate()
    env = {"PII_RING": ring.to_json()}
    enc = opskit("encrypt", "--keyring-env", "PII_RING", "--context", "tenant=acme",
                 "--context", "field=phone", stdin="+41 79 123 45 67\n", env=env)  # fmt: skip
    assert enc.returncode == 0 and enc.stderr == ""
    token = enc.stdout.strip()
    ctx = {"tenant": "acme", "field": "phone"}
    assert PIICipher(ring).decrypt(token, context=ctx) == "+41 79 123 45 67"  # newline stripped
    dec = opskit("decrypt", "--keyring-env", "PII_RING", "--context", "tenant=acme",
                 "--context", "field=phone", stdin=enc.stdout, env=env)  # fmt: skip
    assert dec.returncode == 0 and dec.stdout == "+41 79 123 45 67\n"


def test_failures_exit_non_zero_with_the_class_name_and_no_secret() -> None:
    ring = Keyring.generate()
    env = {"PII_RING": ring.to_json()}
    token = PIICipher(ring).encrypt("+41 79 123 45 67", context={"tenant": "acme"})
    wrong = opskit("decrypt", "--keyring-env", "PII_RING", "--context", "tenant=globex",
                   stdin=token, env=env)  # fmt: skip
    assert wrong.returncode == 1 and wrong.stderr.startswith("DecryptionError")
    bad = opskit("decrypt", "--keyring-env", "PII_RING", stdin="pii1.garbage!", env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("MalformedToken")
    other = opskit("decrypt", "--keyring-env", "PII_RING", stdin=token,
                   env={"PII_RING": Keyring.generate().to_json()})  # fmt: skip
    assert other.returncode == 1 and other.stderr.startswith("KeyNotFound")
    primary = opskit("retire", str(ring.primary_id), stdin=ring.to_json())
    assert primary.returncode == 1 and primary.stderr.startswith("KeyringError")
    unset = opskit("encrypt", "--keyring-env", "PII_RING_UNSET", stdin="x")
    assert unset.returncode == 1 and "KeyringError" in unset.stderr
    junk = opskit("to-tink", stdin="not json")
    assert junk.returncode == 1 and junk.stderr.startswith("KeyringError")
    ctx = opskit("encrypt", "--keyring-env", "PII_RING", "--context", "novalue", stdin="x",
                 env=env)  # fmt: skip
    assert ctx.returncode == 1 and ctx.stderr.startswith("ValueError")
    texts = [p.stdout + p.stderr for p in (wrong, bad, other, primary, unset, junk, ctx)]
    assert_no_leak(texts, [*key_bytes(ring.to_json()), b"+41 79 123 45 67"])
