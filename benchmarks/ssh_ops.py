"""P4: small commands over SSH — corral's shared connection vs fabric.

Needs the test rig (``sudo bash tests/rig/rig.sh up``): it uses the rig's loopback sshd.
Prints the median time per operation of each way, measured in one run:

- corral: ``SSHConnector.run(["true"])`` on its one shared connection (``TCP_NODELAY``);
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--fabric-ops", type=int, default=200)
    parser.add_argument("--connect-ops", type=int, default=50)
    args = parser.parse_args()
    facts = rig_facts()
    alias, config = facts["CORRAL_RIG_SSH_ALIAS"], facts["CORRAL_RIG_SSH_CONFIG"]

    from corral.connectors.ssh import SSHConnector

    corral = SSHConnector(alias, config_file=config)
    start = time.perf_counter()
    corral.run(["true"], check=True)
    first = time.perf_counter() - start
    ours = per_op(args.ops, lambda: corral.run(["true"], check=True) and None)

    import fabric

    fab_config = fabric.Config(runtime_ssh_path=config)

    def fresh() -> None:
        with fabric.Connection(alias, config=fab_config) as c:
            c.run("true", hide=True)

    reused_conn = fabric.Connection(alias, config=fab_config)
    reused_conn.run("true", hide=True)
    reused = per_op(args.fabric_ops, lambda: reused_conn.run("true", hide=True) and None)
    reused_conn.close()
    per_command = per_op(args.connect_ops, fresh)

    print("P4 small SSH commands (rig sshd on loopback), median per operation:")
    print(
        f"  corral, one shared connection  {ours * 1000:7.2f} ms  ({args.ops} ops; "
        f"first op incl. connect {first * 1000:.0f} ms; connections: {corral.connections})"
    )
    print(
        f"  fabric, one reused Connection  {reused * 1000:7.2f} ms  ({args.fabric_ops} ops)  "
        f"{reused / ours:5.1f}x corral"
    )
    print(
        f"  fabric, Connection per command {per_command * 1000:7.2f} ms  ({args.connect_ops} ops)  "
        f"{per_command / ours:5.1f}x corral"
    )
    print("  target: <= 5 ms/op, one handshake per host per run")


if __name__ == "__main__":
    main()
