import sys

from automl.cli.main import main

sys.exit(main())
