import sys

from harness.cli_fast import fast_main

# `score --arpa FILE --file BIG` first, without importing torch (harness.cli_fast); None: any other command
code = fast_main(sys.argv[1:])
if code is None:
    from harness.cli import main

    code = main()
sys.exit(code)
