"""`python -m mdp_trt` runs the CLI."""

import sys

from mdp_trt.cli import main

sys.exit(main())
