#!/usr/bin/env bash
# corral job pkg.Learn abababababababababababababababababababababababababababababababab
cd -- /ws/jobs/pkg.Learn/abababababababababababababababababababababababababababababababab || exit 70
exec >stdout 2>stderr
export CORRAL_JOB_DIR=/ws/jobs/pkg.Learn/abababababababababababababababababababababababababababababababab
PYTHON=/usr/bin/python3
exec "$PYTHON" -m corral.run params.json
