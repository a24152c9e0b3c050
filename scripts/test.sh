#!/usr/bin/env bash
# The one test entry point: install, start the test rig, lint, type-check, build the docs,
# run the suite, stop the rig.
# Usage: bash scripts/test.sh [pytest args...]
#
# As root, the test rig (tests/rig/rig.sh: SLURM + sshd on loopback) comes up first and goes
# down at the end, failure or not; CORRAL_RIG_KEEP=1 leaves it running for the next run.
# Not root: no rig; the tests that need it skip (and fail under CI=true).
#
# Without pytest args the suite runs against the rig in two phases, so both ways real
# clusters come are exercised:
#   1. mode sacct+cgroup (slurmdbd, enforced memory): every test but those marked no_sacct
#      (tests/unit and tests/execution, which need no rig, in a second pytest beside it);
#   2. mode squeue (no accounting): the SLURM launcher's and the rig's quick tests again,
#      preemption, and those marked no_sacct.
# With pytest args: one run, in CORRAL_RIG_MODE (default sacct+cgroup).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

rig=0
mode=${CORRAL_RIG_MODE:-sacct+cgroup}
if [[ $(id -u) == 0 ]]; then
    rig=1
    if [[ ${CORRAL_RIG_KEEP:-0} != 1 ]]; then
        teardown() {  # stop the rig, then prove nothing of it is left running
            local code=${1:-$?} rc=0  # the exit status: given, or the script's
            trap - EXIT
            bash tests/rig/rig.sh down || true
            bash tests/rig/rig.sh status >&2 || rc=$?
            if ((rc != 3)); then
                echo "test.sh: the test rig left something behind (see above)" >&2
                ((code)) || code=1
            fi
            exit "$code"
        }
        trap teardown EXIT
    fi
    if [[ -z ${CORRAL_RIG_MODE:-} && ${CI:-} != true ]] && ! bash tests/rig/rig.sh check-cgroup; then
        echo "test.sh: cgroup mode cannot work here; using mode sacct (the cgroup tests skip)" >&2
        mode=sacct
    fi
    bash tests/rig/rig.sh up --mode "$mode"
else
    echo "test.sh: not root, so the test rig is not started: tests needing it skip" \
        "(or fail under CI=true). Start it with: sudo bash tests/rig/rig.sh up" >&2
fi

lint=()
for dir in corral tests benchmarks examples; do [[ -e $dir ]] && lint+=("$dir"); done
python3 -m ruff check "${lint[@]}"
python3 -m mypy
site=$(mktemp -d)  # the docs site, built strictly, outside the repository
# Not --quiet: it hides the warnings that --strict turns into a failure.
if ! NO_MKDOCS_2_WARNING=1 python3 -m mkdocs build --strict --site-dir "$site/html" >"$site/log" 2>&1; then
    cat "$site/log" >&2
    echo "test.sh: the documentation site does not build (mkdocs build --strict)" >&2
    rm -rf "$site"
    exit 1
fi
rm -rf "$site"

# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
status=0
if ((rig && $# == 0)); then
    # The tests that need no rig (unit, execution: the local launcher) run beside the rig's
    # phase 1: those mostly wait on daemons, these mostly compute, and the machine has two
    # cores. Their output follows phase 1's, whole.
    local_log=$(mktemp)
    python3 -m pytest --durations=15 -p no:cacheprovider --basetemp="$(mktemp -d)" \
        tests/unit tests/execution >"$local_log" 2>&1 &
    local_pid=$!
    # leaving early (a failure, a signal): that pytest goes too, then the rig as before
    trap 'code=$?; kill "$local_pid" 2>/dev/null || true; rm -f "$local_log"
          if declare -F teardown >/dev/null; then teardown "$code"; fi; exit "$code"' EXIT
    python3 -m pytest --durations=25 -m "not no_sacct" --ignore=tests/unit \
        --ignore=tests/execution || status=$?
    local_status=0
    wait "$local_pid" || local_status=$?
    echo "===== tests that need no rig (tests/unit, tests/execution), run beside phase 1 ====="
    cat "$local_log"
    rm -f "$local_log"
    ((status)) || status=$local_status
    bash tests/rig/rig.sh up --mode squeue
    # Phase 2: where a cluster without accounting differs: the SLURM launcher's own tests
    # (states from squeue alone, jobs forgotten after MinJobAge; over SSH in phase 1 only),
    # the rig's, preemption.
    python3 -m pytest --durations=15 -m "slurm and not (slow or sacct or cgroup) or no_sacct" \
        -k "not OverSSH" tests/integration/test_slurm_launcher.py tests/integration/test_rig.py \
        "tests/integration/test_cluster.py::test_a_preempted_resumable_task_checkpoints_and_finishes_from_its_checkpoint" ||
        { s=$?; ((status)) || status=$s; }
else
    python3 -m pytest --durations=25 "$@" || status=$?
fi
exit "$status"
