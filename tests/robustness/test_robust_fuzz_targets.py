"""Every atheris target in ``fuzz/fuzzlib.py`` under hypothesis, briefly:
the seeds, mutations of the seeds and random bytes.  Keeps the harnesses
working and gives the suite garbage for every parser, every session state
(IKEv2 and IKEv1, including inner payload chains sealed with the peer's real
keys) and the endpoint demux.  Long runs: ``fuzz/README.md``."""

from __future__ import annotations

import pytest
from conftest import SOAK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzlib

EXAMPLES = {
    "ikev2_message": 1500,
    "ikev2_fragments": 400,
    "ikev2_session": 600,
    "ikev1_message": 1500,
    "ikev1_session": 600,
    "esp_open": 800,
    "endpoint_demux": 800,
    "config_loader": 1000,
}


def _inputs(name: str) -> st.SearchStrategy[bytes]:
    seeds = fuzzlib.seeds(name)
    mutated = st.tuples(st.sampled_from(seeds), st.binary(max_size=48)).map(
        lambda t: fuzzlib.mutate(t[0], fuzzlib.Reader(t[1]))
    )
    prefixed = st.tuples(st.binary(min_size=1, max_size=8), st.sampled_from(seeds)).map(lambda t: t[0] + t[1])
    return st.one_of(st.sampled_from(seeds), mutated, prefixed, st.binary(max_size=600))


@pytest.mark.parametrize("name", list(fuzzlib.TARGETS))
def test_fuzz_target_seeds(name: str) -> None:
    """Every seed input passes its target's contract."""
    for data in fuzzlib.seeds(name):
        fuzzlib.TARGETS[name](data)


@pytest.mark.parametrize("name", list(fuzzlib.TARGETS))
def test_fuzz_target_hypothesis(name: str) -> None:
    target = fuzzlib.TARGETS[name]
    n = EXAMPLES[name] * (20 if SOAK else 1)

    @settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(_inputs(name))
    def run(data: bytes) -> None:
        target(data)

    run()


def test_session_states_are_reached() -> None:
    """The state builders really produce the states the targets claim to
    fuzz (a silent fallback would make the session fuzzing shallow)."""
    for state in fuzzlib.V2_STATES:
        w, side = fuzzlib._v2_state(state, 0, 0)
        s = w.i if side == "i" else w.r
        if state in ("i-established", "r-established", "i-child-rekey-sent", "r-child-rekey-received", "i-ike-rekey-sent"):
            assert s.is_established, state
        if state == "r-init-done":
            assert s.sa.sk is not None and not s.is_established
        if state == "i-auth-sent":
            assert s.sa.sk is not None and s.sa.tm.active is not None
        if state == "r-closed":
            assert s.is_closed
        if state in ("i-child-rekey-sent", "i-ike-rekey-sent", "i-deleting"):
            assert s.sa.tm.active is not None, state
    for state in fuzzlib.V1_STATES:
        w1, side = fuzzlib._v1_state(state, 0, 0)
        s1 = w1.i if side == "i" else w1.r
        if "established" in state or state in ("r-qm2-sent",):
            assert s1.is_established, state
        if state in ("r-mm4-sent", "i-mm5-sent"):
            assert s1.sa is not None and s1.sa.keys is not None, state


def test_contract_violations_are_reported() -> None:
    """The harness would notice a parser raising something undocumented."""
    with pytest.raises(fuzzlib.ContractViolation):
        fuzzlib.check(False, "boom")
    r = fuzzlib.Reader(b"\x01\x02\x03")
    assert (r.u8(), r.u16(), r.u32(), r.remaining()) == (1, 0x0203, 0, 0)
