"""Entry point of a job process: ``python -m corral.run params.json`` (imports little)."""

import sys

from corral.host.runner import main

if __name__ == "__main__":
    sys.exit(main())
