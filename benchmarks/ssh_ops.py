"""P4: small commands over SSH — corral's shared connection vs fabric.

Needs the test rig (``sudo bash tests/rig/rig.sh up``): it uses the rig's loopback sshd.
Prints the median time per operation of each way, measured in one run:

- corral: ``SSHConnector.run(["true"])`` through the connection shared by the user's corral
  processes (its holder, over a Unix socket), and, as ``corral_own``, on a connection of
  this process alone (``persist=0``; ``TCP_NODELAY``); ``process_first`` is the first
  command of a later process, which finds the shared connection open;
- fabric, reusing one ``Connection`` for every command;
- fabric, opening a fresh ``Connection`` per command (what a naive loop does).

    python -m benchmarks.ssh_ops [--ops 500] [--fabric-ops 200] [--connect-ops 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rig_facts() -> dict[str, str]:
    env = REPO / ".rig" / "rig.env"
    if not env.is_file():
        raise SystemExit(f"the test rig is not up (no {env}): sudo bash tests/rig/rig.sh up")
    facts = {}
    for line in env.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            facts[key.strip()] = value.strip()
    return facts


def per_op(n: int, op: Callable[[], None]) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        op()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(ops: int = 500, fabric_ops: int = 200, connect_ops: int = 50) -> dict[str, float]:
    """Median seconds per operation of each way (fabric's skipped when it is missing)."""
    facts = rig_facts()
    alias, config = facts["CORRAL_RIG_SSH_ALIAS"], facts["CORRAL_RIG_SSH_CONFIG"]

    from corral.connectors import ssh_share
    from corral.connectors.ssh import SSHConnector

    own = SSHConnector(alias, config_file=config, persist=0)
    start = time.perf_counter()
    own.run(["true"], check=True)
    result = {"first": time.perf_counter() - start}
    result["corral_own"] = per_op(ops, lambda: own.run(["true"], check=True) and None)
    own.close()
    corral = SSHConnector(alias, config_file=config)
    corral.run(["true"], check=True)
    result["corral"] = per_op(ops, lambda: corral.run(["true"], check=True) and None)
    result["connections"] = float(corral.connections)

    def later_process() -> None:
        ssh_share.close_all()  # what a new process has: no link yet, the holder open
        SSHConnector(alias, config_file=config).run(["true"], check=True)

    result["process_first"] = per_op(min(ops, 50), later_process)
    corral.close()
    try:
        import fabric
    except ImportError:
        return result

    fab_config = fabric.Config(runtime_ssh_path=config)

    def fresh() -> None:
        with fabric.Connection(alias, config=fab_config) as c:
            c.run("true", hide=True)

    reused_conn = fabric.Connection(alias, config=fab_config)
    reused_conn.run("true", hide=True)
    result["fabric_reused"] = per_op(
        fabric_ops, lambda: reused_conn.run("true", hide=True) and None
    )
    reused_conn.close()
    result["fabric_fresh"] = per_op(connect_ops, fresh)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--fabric-ops", type=int, default=200)
    parser.add_argument("--connect-ops", type=int, default=50)
    args = parser.parse_args()
    r = measure(args.ops, args.fabric_ops, args.connect_ops)
    ours = r["corral"]
    print("P4 small SSH commands (rig sshd on loopback), median per operation:")
    print(
        f"  corral, one shared connection  {ours * 1000:7.2f} ms  ({args.ops} ops; "
        f"first op incl. connect {r['first'] * 1000:.0f} ms; connections: {r['connections']:.0f})"
    )
    if "fabric_reused" not in r:
        print("  fabric: not installed (pip install -e .[bench])")
        return
    print(
        f"  fabric, one reused Connection  {r['fabric_reused'] * 1000:7.2f} ms  "
        f"({args.fabric_ops} ops)  {r['fabric_reused'] / ours:5.1f}x corral"
    )
    print(
        f"  fabric, Connection per command {r['fabric_fresh'] * 1000:7.2f} ms  "
        f"({args.connect_ops} ops)  {r['fabric_fresh'] / ours:5.1f}x corral"
    )
    print("  target: <= 5 ms/op, one handshake per host per run")


if __name__ == "__main__":
    main()
