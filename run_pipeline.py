"""Run the pipeline in the documented form: ``python run_pipeline.py [run flags]``.

Takes the same flags as ``nba-pipeline run``; works from a checkout even when the package
is not installed, as long as its dependencies are.
"""

import sys
from pathlib import Path

try:
    from nba_pipeline.cli import main
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from nba_pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
