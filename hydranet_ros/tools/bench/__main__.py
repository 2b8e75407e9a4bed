"""``python -m hydranet_ros.tools.bench``: how ``--isolate`` starts one process per variant."""
import sys

from .cli import main

sys.exit(main())
