"""``python -m resnet_np.grade FILE...``: grade exercise files (see ``resnet_np.grade``)."""

import sys

from . import main

sys.exit(main())
