import sys

from isoscribe.cli import main

sys.exit(main())
