#!/usr/bin/env python
"""BMC Hub command line: `python manage.py --help` lists the commands."""

import signal
import sys

from lib.cli import main, raise_terminated

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, raise_terminated)  # a stopped cron job closes its run as failed
    sys.exit(main())
