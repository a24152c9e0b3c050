#!/usr/bin/env bash
#SBATCH --job-name=corral-cdcdcdcdcdcd
#SBATCH --time=01:00:00
# corral job pkg.Learn cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd
cd -- '/work space/jobs/pkg.Learn/cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd' || exit 70
exec >stdout 2>stderr
export EMPTY=''
export JAVA_HOME='/opt/java 11'
export NASTY='a'"'"'b $(rm -rf /) `x`
z'
source /opt/venv/bin/activate
export CORRAL_JOB_DIR='/work space/jobs/pkg.Learn/cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd'
PYTHON='/opt/my python/bin/python'
exec "$PYTHON" -m corral.run params.json
