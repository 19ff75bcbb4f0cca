"""`centre submit`: a company's producer, for integration tests and for trying the centre."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from centre.crypto import sign
from centre.kafka import BatchProducer
from centre.settings import Settings
from centre.topology import INTAKE


class SubmitError(ValueError):
    pass


def read_reports(path: Path) -> Iterator[Any]:
    """A JSON object, a JSON array of objects, or JSON lines."""
    text = path.read_bytes()
    stripped = text.lstrip()
    if not stripped:
        raise SubmitError(f"{path}: the file is empty")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise SubmitError(
                        f"{path}:{n}: not JSON ({exc}); use --raw to send it anyway"
                    ) from None
        return
    if isinstance(doc, list):
        yield from doc
    else:
        yield doc


def kafka_key(report: Any) -> bytes | None:
    if isinstance(report, dict):
        pid, prid = report.get("provider_id"), report.get("provider_report_id")
        if isinstance(pid, str) and isinstance(prid, str):
            return f"{pid}/{prid}".encode()
    return None


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SubmitError(f"{path} is not an Ed25519 private key")
    return key


def submit_files(
    settings: Settings,
    files: list[Path],
    *,
    sign_key: Path | None = None,
    raw: bool = False,
    errors: Console | None = None,
) -> int:
    producer = BatchProducer(settings)
    signer = load_signing_key(sign_key) if sign_key else None
    sent = 0
    for path in files:
        if raw:
            payloads: list[tuple[bytes | None, bytes]] = [(None, path.read_bytes())]
        else:
            payloads = [(kafka_key(r), orjson.dumps(r)) for r in read_reports(path)]
        for key, value in payloads:
            headers = [("signature", sign(value, signer).encode())] if signer else None
            producer.send(INTAKE, value, key=key, headers=headers)
            sent += 1
    producer.flush_or_raise()
    return sent
