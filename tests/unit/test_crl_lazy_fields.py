"""A CRL whose issuer name holds a value of an unexpected ASN.1 type loads in
``cryptography`` (the name is decoded on first use) but fails when the issuer
is read, which the revocation check of every IKE_AUTH does.  Found by the
hypothesis test of the config loader; both ways a CRL comes in (a ``crls``
file, a fetched CDP answer) must refuse it up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from aioipsec.config_file import parse_config
from aioipsec.errors import ConfigError
from aioipsec.ike.auth import parse_crl

# DER CRL, signature not valid; the issuer's CN is tagged 13 (RELATIVE-OID)
BAD_ISSUER = (
    b"0\x81\xcd0v\x02\x01\x010\n\x06\x08*\x86H\xce=\x04\x03\x020\x121\x100\x0e\x06\x03U\x04\x03\r\x07Fuzz CA"
    b"\x17\r260531000000Z\x17\r260608000000Z0#0!\x02\x02\x00\x99\x17\r260530000000Z0\x0c0\n\x06\x03U\x1d\x15"
    b"\x04\x03\n\x01\x01\xa0\x0e0\x0c0\n\x06\x03U\x1d\x14\x04\x03\x02\x01\x050\n\x06\x08*\x86H\xce=\x04\x03"
    b"\x02\x03G\x000D\x02 |\xdb\x12\x93\xce\xaa\xd9\xee\xb1:\xb4\xe13\xdf\xfa#\x97\xbd\xe1=s\x16\xcc\xdc\xa30"
    b"\xe8\xecj\xb5<(\x02 l\xb9)\xe8KB\xd5\xb7>\x82\xd6t|-\x8e\t\xa7l\n>I\xde\xa7\xe0\x86\x83\xcf\x9f}\x8c"
    b"\xc2\xd6"
)


def test_a_fetched_crl_with_a_broken_issuer_is_refused_when_parsed() -> None:
    with pytest.raises(ValueError, match="not a certificate revocation list"):
        parse_crl(BAD_ISSUER)


def test_a_crl_file_with_a_broken_issuer_fails_at_load_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "bad.crl").write_bytes(BAD_ISSUER)
    with pytest.raises(ConfigError) as info:
        parse_config({"crls": ["bad.crl"]}, file="c.toml", base=tmp_path)
    assert info.value.path == "crls[0]"
    assert "malformed certificate revocation list" in info.value.reason
