"""``python -m ufm`` is the ``ufm`` command."""

import sys

from ufm.cli import main

sys.exit(main())
