#!/usr/bin/env python
"""BMC Hub command line: `python manage.py --help` lists the commands."""

import sys

from lib.cli import main

if __name__ == "__main__":
    sys.exit(main())
