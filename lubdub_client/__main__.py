"""`python -m lubdub_client`: the same as the `lubdub` console script."""

import sys

from lubdub_client.main import main

sys.exit(main())
