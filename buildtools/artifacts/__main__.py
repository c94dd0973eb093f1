"""``python -m buildtools.artifacts build|path``."""

import sys

from buildtools.artifacts.bundle import main

sys.exit(main())
