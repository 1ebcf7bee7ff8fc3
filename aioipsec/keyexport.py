"""Key export for Wireshark, only when a connection sets ``key_export = true``.

Writes ``esp_sa`` (ESP SA UAT) and ``ikev2_decryption_table`` /
``ikev1_decryption_table`` files into a directory (mode 0600).  Use them as a
Wireshark profile: copy them into ``~/.config/wireshark/`` (or point
``XDG_CONFIG_HOME`` at a directory whose ``wireshark/`` holds them) and run
``tshark -o esp.enable_encryption_decode:TRUE -r capture.pcap``, or pass single
records with ``tshark -o "uat:esp_sa:<record>"``.

The sessions' IKE keys come from ``session.export_keys()``: a list of dicts
with ``version``, ``spi_i``, ``spi_r`` and, for IKEv2, ``sk_ei``, ``sk_er``,
``sk_ai``, ``sk_ar``, ``encr``, ``integ`` (strongSwan names), for IKEv1
``enc_key``.  A session without ``export_keys`` exports no IKE keys.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

_WS_ENCR = {
    "aes128gcm16": "AES-GCM with 16 octet ICV [RFC4106]",
    "aes192gcm16": "AES-GCM with 16 octet ICV [RFC4106]",
    "aes256gcm16": "AES-GCM with 16 octet ICV [RFC4106]",
    "aes128gcm8": "AES-GCM with 8 octet ICV [RFC4106]",
    "aes256gcm8": "AES-GCM with 8 octet ICV [RFC4106]",
    "aes128gcm12": "AES-GCM with 12 octet ICV [RFC4106]",
    "aes256gcm12": "AES-GCM with 12 octet ICV [RFC4106]",
    "aes128": "AES-CBC [RFC3602]",
    "aes192": "AES-CBC [RFC3602]",
    "aes256": "AES-CBC [RFC3602]",
    "aes128ctr": "AES-CTR [RFC3686]",
    "aes256ctr": "AES-CTR [RFC3686]",
    "chacha20poly1305": "ChaCha20 with Poly1305 [RFC7634]",
    "3des": "TripleDES-CBC [RFC2451]",
    "null": "NULL",
}
_WS_INTEG = {
    None: "NULL",
    "sha1": "HMAC-SHA-1-96 [RFC2404]",
    "sha256": "HMAC-SHA-256-128 [RFC4868]",
    "sha384": "HMAC-SHA-384-192 [RFC4868]",
    "sha512": "HMAC-SHA-512-256 [RFC4868]",
    "md5": "HMAC-MD5-96 [RFC2403]",
    "aesxcbc": "ANY 96 bit authentication [no checking]",
    "aescmac": "ANY 96 bit authentication [no checking]",
}
_WS_IKE_ENCR = {
    "aes128": "AES-CBC-128 [RFC3602]",
    "aes192": "AES-CBC-192 [RFC3602]",
    "aes256": "AES-CBC-256 [RFC3602]",
    "aes128gcm16": "AES-GCM-128 with 16 octet ICV [RFC5282]",
    "aes256gcm16": "AES-GCM-256 with 16 octet ICV [RFC5282]",
    "aes128gcm8": "AES-GCM-128 with 8 octet ICV [RFC5282]",
    "aes256gcm8": "AES-GCM-256 with 8 octet ICV [RFC5282]",
    "3des": "3DES [RFC2451]",
}
_WS_IKE_INTEG = {
    None: "NONE [RFC4306]",
    "sha1": "HMAC_SHA1_96 [RFC2404]",
    "sha256": "HMAC_SHA2_256_128 [RFC4868]",
    "sha384": "HMAC_SHA2_384_192 [RFC4868]",
    "sha512": "HMAC_SHA2_512_256 [RFC4868]",
    "md5": "HMAC_MD5_96 [RFC2403]",
}


def _allowed(name: str | None, allowed: Collection[str] | None) -> bool:
    return allowed is None or name in allowed


def esp_sa_lines(endpoint: Any, allowed: Collection[str] | None = None) -> list[str]:
    """One UAT record per direction of every installed Child SA (of the
    connections named in ``allowed``, default all)."""
    lines = []
    for pipe in endpoint.dataplane.sad_in.values():
        if pipe.owner is not None and not _allowed(pipe.owner.name, allowed):
            continue
        ev = pipe.ev
        if ev.protocol != "esp" or ev.encr is None:
            continue
        fam = "IPv6" if ":" in ev.local_addr[0] else "IPv4"
        enc = _WS_ENCR.get(ev.encr.name, ev.encr.name)
        integ = _WS_INTEG.get(ev.integ.name if ev.integ else None, "NULL")
        local, remote = ev.local_addr[0], pipe.remote[0]
        for src, dst, spi, ek, ak in (
            (remote, local, ev.spi_in, ev.encr_key_in, ev.integ_key_in),
            (local, remote, ev.spi_out, ev.encr_key_out, ev.integ_key_out),
        ):
            lines.append(
                f'"{fam}","{src}","{dst}","0x{spi:08x}","{enc}","0x{ek.hex()}","{integ}","0x{ak.hex() if ak else ""}"'
            )
    return lines


def session_keys(session: Any) -> list[dict[str, Any]]:
    """The IKE keys of a session's IKE SAs (current and not yet deleted old
    ones) from its ``export_keys()``; empty before keys exist."""
    export = getattr(session, "export_keys", None)
    return [] if export is None else list(export())


def ike_lines(endpoint: Any, allowed: Collection[str] | None = None) -> tuple[list[str], list[str]]:
    """(ikev2_decryption_table, ikev1_decryption_table) records."""
    v2, v1 = [], []
    for proto in endpoint.sessions:
        if not _allowed(proto.name, allowed):
            continue
        for k in session_keys(proto.session):
            _ike_record(k, v2, v1)
    return v2, v1


def _ike_record(k: dict[str, Any], v2: list[str], v1: list[str]) -> None:
    # Wireshark UAT files: hex byte fields unquoted, strings quoted
    if k.get("version") == 1:
        v1.append(f'{k["spi_i"].hex()},{k["enc_key"].hex()}')
        return
    v2.append(
        f'{k["spi_i"].hex()},{k["spi_r"].hex()},{k["sk_ei"].hex()},{k["sk_er"].hex()},'
        f'"{_WS_IKE_ENCR.get(k["encr"], k["encr"])}",{k["sk_ai"].hex()},{k["sk_ar"].hex()},'
        f'"{_WS_IKE_INTEG.get(k.get("integ"), "NONE [RFC4306]")}"'
    )


def export_wireshark(endpoint: Any, directory: str, allowed: Collection[str] | None = None) -> dict[str, Any]:
    """Write the three tables into ``directory`` (created, files 0600) for the
    connections in ``allowed`` (default all); returns the record counts."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    esp = esp_sa_lines(endpoint, allowed)
    v2, v1 = ike_lines(endpoint, allowed)
    written = {}
    for name, lines in (("esp_sa", esp), ("ikev2_decryption_table", v2), ("ikev1_decryption_table", v1)):
        p = d / name
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        written[name] = len(lines)
    return {"directory": str(d), "records": written}
