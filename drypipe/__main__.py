"""`python -m drypipe`: the CLI; `call` takes a fast path that does not load the CLI."""
import sys

# The task runtime's form, `call MODULE:FUNCTION`; `call -k KEY ...` (the command) goes to the CLI.
if len(sys.argv) == 3 and sys.argv[1] == "call" and not sys.argv[2].startswith("-"):
    from drypipe.pycall import main as call_main

    sys.exit(call_main(sys.argv[2:]))

from drypipe.cli import main  # noqa: E402

main()
