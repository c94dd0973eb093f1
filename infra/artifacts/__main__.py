"""``python -m infra.artifacts build|path``."""

import sys

from infra.artifacts.bundle import main

sys.exit(main())
