"""`python -m drypipe`: the CLI; `call` takes a fast path that does not load the CLI."""
import sys

if len(sys.argv) > 1 and sys.argv[1] == "call" and "--task-key" not in sys.argv:
    from drypipe.pycall import main as call_main

    sys.exit(call_main(sys.argv[2:]))

from drypipe.cli import main  # noqa: E402

main()
