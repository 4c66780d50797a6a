"""``opskit pii ...``: keyring management and one-off encrypt / decrypt.

Key commands read a keyring JSON on stdin (or from ``--keyring-env VAR``) and
print the result on stdout; ``encrypt`` / ``decrypt`` take the keyring only
from the variable and the value or token on stdin (one trailing newline
stripped). Failures exit 1 with the error's class name and its fixed message on
stderr; no key byte ever goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from prometheus_client import CollectorRegistry

from opskit.pii._cipher import PIICipher
from opskit.pii._errors import KeyringError, PIIError
from opskit.pii._keyring import Keyring

__all__ = ["add_parser", "run"]

_QUIET = CollectorRegistry(auto_describe=False)  # a one-shot command publishes nothing


def add_parser(sub: Any) -> None:
    """Add ``pii`` and its commands to the ``opskit`` subparsers."""
    pii = sub.add_parser("pii", help="PII keyrings: keygen, rotation steps, Tink JSON, encrypt")
    cmds = pii.add_subparsers(dest="pii_command", required=True)
    cmds.add_parser("keygen", help="print a new keyring JSON (one primary key)")
    keyed = (
        ("add-key", "add a key (not primary); its id goes to stderr"),
        ("to-tink", "opskit keyring JSON -> Tink cleartext JSON keyset"),
        ("from-tink", "Tink cleartext JSON keyset -> opskit keyring JSON"),
    )
    for name, text in keyed:
        p = cmds.add_parser(name, help=text)
        p.add_argument("--keyring-env", metavar="VAR", help="read the input from this variable")
    for name, text in (("promote", "make key ID the primary"),
                       ("retire", "drop key ID (never the primary)")):  # fmt: skip
        p = cmds.add_parser(name, help=text)
        p.add_argument("key_id", type=int, metavar="ID")
        p.add_argument("--keyring-env", metavar="VAR", help="read the keyring from this variable")
    for name, text in (("encrypt", "encrypt stdin's value to a token"),
                       ("decrypt", "decrypt stdin's token")):  # fmt: skip
        p = cmds.add_parser(name, help=text)
        p.add_argument("--keyring-env", metavar="VAR", required=True,
                       help="the variable holding the keyring JSON")  # fmt: skip
        p.add_argument("--context", action="append", default=[], metavar="K=V",
                       help="a context entry (repeatable)")  # fmt: skip


def _input(args: argparse.Namespace, stdin: TextIO) -> str:
    var = getattr(args, "keyring_env", None)
    if var:
        text = os.environ.get(var)
        if not text:
            raise KeyringError(f"environment variable {var} is not set or empty")
        return text
    return stdin.read()


def _line(stdin: TextIO) -> str:
    text = stdin.read()
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


def _context(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError("--context takes K=V")
        out[key] = value
    return out


def run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:  # fmt: skip
    """Run one ``opskit pii`` command; 0 on success, 1 with the error's class name."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    cmd = args.pii_command
    try:
        if cmd == "keygen":
            out = Keyring.generate().to_json()
        elif cmd == "from-tink":
            out = Keyring.from_tink_json(_input(args, stdin)).to_json()
        elif cmd in ("encrypt", "decrypt"):
            ring = Keyring.from_json(_input(args, stdin))
            context = _context(args.context)
            pii = PIICipher(ring, registry=_QUIET)
            value = _line(stdin)
            out = pii.encrypt(value, context) if cmd == "encrypt" else pii.decrypt(value, context)
        else:
            ring = Keyring.from_json(_input(args, stdin))
            if cmd == "to-tink":
                out = ring.to_tink_json()
            elif cmd == "add-key":
                ring = ring.add_key()
                print(f"added key {ring.newest_id} (not primary)", file=stderr)
                out = ring.to_json()
            elif cmd == "promote":
                out = ring.promote(args.key_id).to_json()
            else:
                out = ring.retire(args.key_id).to_json()
    except (PIIError, ValueError, TypeError) as err:
        # PIIError messages are fixed text; ValueErrors here are our own.
        print(f"{type(err).__name__}: {err}", file=stderr)
        return 1
    stdout.write(out + "\n")
    return 0
