"""``rekey NAME --reauth`` (``swanctl --rekey --reauth``) through the CLI
against two in-memory daemons (``test_cli_operator.py``'s Site A and HQ with
two children): IKEv2 gets a new IKE SA (new SPIs, IKE_AUTH again) with both
Child SAs created again (new SPIs, same children), the old IKE SA deleted at
both ends, pings pass; IKEv1 does its Phase 1 renewal (which is one)."""

from __future__ import annotations

import re

import pytest
from test_cli_daemon import ping, short_dir  # noqa: F401  (fixtures)
from test_cli_operator import gws, pairs, status, until_status, up_both  # noqa: F401  (fixtures)


async def test_rekey_reauth(gws) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    g = gws
    await up_both(g)
    [sa] = await status(g)
    old = (sa["spi_i"], sa["spi_r"])
    old_children = pairs(sa)
    v1 = sa["version"] == 1
    rc, out, err = await g.cli("rekey", "hq", "--reauth")
    assert rc == 0, err
    lines = out.strip().splitlines()
    if v1:
        m = re.fullmatch(rf"hq: IKE SA rekeyed, SPIs {old[0]}_i {old[1]}_r -> ([0-9a-f]{{16}})_i ([0-9a-f]{{16}})_r, "
                         r"2 CHILD_SAs kept", lines[0])
        assert m, out
        new = m.groups()
    else:
        m = re.fullmatch(rf"hq: IKE SA reauthenticated, SPIs {old[0]}_i {old[1]}_r -> ([0-9a-f]{{16}})_i "
                         r"([0-9a-f]{16})_r, 2 CHILD_SAs created again", lines[0])
        assert m, out
        new = m.groups()
        assert sorted(line.split()[2] for line in lines[1:]) == ["dmz", "lan"]
    assert new[0] != old[0] and new[1] != old[1]
    [sa] = await until_status(g, lambda st: len(st) == 1, what="one IKE SA at Site A")
    assert (sa["spi_i"], sa["spi_r"]) == new
    [hsa] = await until_status(g, lambda st: len(st) == 1 and (st[0]["spi_i"], st[0]["spi_r"]) == new, ctl=g.ctl_h,
                               what="only the new IKE SA at HQ")
    assert sorted(c["child"] for c in hsa["children"]) == ["dmz", "lan"]
    if not v1:
        fresh = pairs(sa)
        assert [c for c, _i, _o in fresh] == ["dmz", "lan"]
        assert {s for _c, i, o in fresh for s in (i, o)}.isdisjoint({s for _c, i, o in old_children for s in (i, o)})
    assert await ping(g, 2) == 2


async def test_rekey_reauth_errors(gws) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    g = gws
    rc, _out, err = await g.cli("rekey", "hq", "--reauth")
    assert rc == 1 and err.strip() == "error: hq: no IKE SA"
    rc, _out, err = await g.cli("rekey", "hq", "--reauth", "--ike")
    assert rc == 2 and "not allowed with argument" in err
    from aioipsec.control import request

    with pytest.raises(RuntimeError, match="reauth renews the IKE SA and every Child SA: not with ike or child"):
        await request(g.ctl_a, {"cmd": "rekey", "name": "hq", "child": "lan", "reauth": True})
    with pytest.raises(RuntimeError, match="reauth must be true or false"):
        await request(g.ctl_a, {"cmd": "rekey", "name": "hq", "reauth": 1})
