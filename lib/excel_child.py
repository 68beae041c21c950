"""The child process that parses an uploaded workbook (`python -m lib.excel_child`; see lib.excel_reader)."""

import sys

from lib.excel_reader import serve

if __name__ == "__main__":
    sys.exit(serve())
