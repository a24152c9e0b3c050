#!/usr/bin/env bash
# corral job pkg.Learn efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef
cd -- /ws/jobs/pkg.Learn/efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef || exit 70
exec >stdout 2>stderr
. .corral/secrets.env || exit 70
export PLAIN=1
export CORRAL_JOB_DIR=/ws/jobs/pkg.Learn/efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef
PYTHON=python3
exec "$PYTHON" -m corral.run params.json
