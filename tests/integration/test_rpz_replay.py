"""Replay of Unbound's RPZ scenarios (../shared/data/rpz/unbound/testdata/rpz_*.rpl).

Adapted to a forwarder: every scripted upstream answer (RANGE/ENTRY) is served
by one local fixture that mamori forwards to; the scenario's rpz: zones become
[[rpz]] zones; each STEP QUERY is sent to mamori (from 127.0.0.1, or from
the scenario's client address inside a network namespace) and checked
against its CHECK_ANSWER on rcode, TC and the answer section (owner, type,
rdata; TTLs, AA/RA and the authority section are not compared: mamori adds
the policy SOA as BIND does, Unbound does not).

Scenarios that need what a forwarder or this harness cannot do are skipped
with the reason (SKIPPED below, also in docs/reference/rpz.md). Steps where
mamori knowingly differs are listed in KNOWN: they must keep failing, so a
fix (or a regression elsewhere) shows up as a test failure to update here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.support import replay, rpl

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared/data/rpz/unbound/testdata"

SKIPPED = {
    "rpz_axfr.rpl": "simulated time (TIME_PASSES) and scripted transfer timing; zone transfer"
    " itself is tested against real BIND and Unbound (test_xfr_*.py)",
    "rpz_ixfr.rpl": "simulated time (TIME_PASSES) and scripted transfer timing; zone transfer"
    " itself is tested against real BIND and Unbound (test_xfr_*.py)",
    "rpz_cached_cname.rpl": "simulated time (TIME_PASSES)",
    "rpz_respip.rpl": "simulated time (TIME_PASSES)",
    "rpz_respip_override.rpl": "simulated time (TIME_PASSES)",
    "rpz_cname_tag.rpl": "Unbound tags (no equivalent)",
    "rpz_clientip_passthru_dns64.rpl": "DNS64 module (not a mamori feature)",
    "rpz_val_block.rpl": "DNSSEC validator module",
    "rpz_signal_nxdomain_ra.rpl": "Unbound-specific option rpz-signal-nxdomain-ra",
    "rpz_qname_override.rpl": "zones without SOA, NS and TTLs (Unbound accepts them; mamori,"
    " like BIND, refuses such zone files)",
}

# (scenario, CHECK_ANSWER step): why mamori answers differently.
KNOWN: dict[tuple[str, int], str] = {
    ("rpz_qname.rpl", 11): "two CNAMEs at one owner (a CNAME . / a CNAME *.): dnspython keeps the"
    " last (NODATA), Unbound the first (NXDOMAIN)",
}


def _scenarios() -> list[str]:
    return sorted(p.name for p in DATA.glob("rpz_*.rpl")) if DATA.exists() else []


@pytest.fixture(params=_scenarios() or ["(none)"])
def scenario(request: pytest.FixtureRequest) -> rpl.Scenario:
    name = request.param
    if name == "(none)":
        pytest.skip("shared data not present")
    if name in SKIPPED:
        pytest.skip(SKIPPED[name])
    return rpl.parse(DATA / name)


def test_replay_unbound_rpz_scenario(scenario: rpl.Scenario, tmp_path: Path) -> None:
    if all(s.address is None or s.address.startswith("127.") for s in scenario.steps):
        results = replay.run(scenario, tmp_path)
    else:
        results = _run_in_netns(scenario, tmp_path)
    name = scenario.path.name
    failing = {n: r for n, r in results.items() if r[0] != r[1]}
    known = {n for (s, n) in KNOWN if s == name}
    assert results, "the scenario has checks"
    unexpected = {n: failing[n] for n in failing if n not in known}
    fixed = sorted(known - set(failing))
    assert not unexpected, f"{name}: steps differ from Unbound (got, expected): {unexpected}"
    assert not fixed, f"{name}: steps listed in KNOWN now pass, update KNOWN: {fixed}"


def _run_in_netns(scenario: rpl.Scenario, tmp_path: Path) -> replay.Results:
    """Client-IP scenarios query from 192.0.x.x: run them in a private network namespace.

    The namespace has only a loopback interface carrying 192.0.0.0/8 and
    193.0.0.0/8, so nothing can leave the machine.
    """
    if os.geteuid() != 0:
        pytest.skip("queries from non-loopback addresses need a network namespace (root)")
    ip = require_binary("ip")
    ns = f"mamori-replay-{os.getpid()}"
    made = subprocess.run([ip, "netns", "add", ns], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        for cmd in (
            ["link", "set", "lo", "up"],
            ["addr", "add", "192.0.0.1/8", "dev", "lo"],
            ["addr", "add", "193.0.0.1/8", "dev", "lo"],
        ):
            subprocess.run([ip, "-n", ns, *cmd], check=True)
        args = [str(scenario.path), str(tmp_path)]
        proc = subprocess.run(
            [ip, "netns", "exec", ns, sys.executable, "-m", "tests.support.replay", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=Path(__file__).resolve().parents[2],
        )
    finally:
        subprocess.run([ip, "netns", "del", ns], check=False)
    assert proc.returncode == 0, proc.stderr
    raw = json.loads(proc.stdout)
    return {int(n): (_view(g), _view(e)) for n, (g, e) in raw.items()}


def _view(v: list[object]) -> tuple[object, ...]:
    return tuple(v)
