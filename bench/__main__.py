"""``python -m bench``: run the benchmark suite (see ``bench.run.main``)."""
import sys

from bench.run import main

sys.exit(main())
