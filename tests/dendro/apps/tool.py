"""Test processor: `fail TAG`, `copy IN OUT`, `sleep SECONDS PID_FILE`, `append MARKER OUT`,
`echo JOB_FILE OUT`."""
import json
import os
import shutil
import sys
import time

command, args = sys.argv[1], sys.argv[2:]
if command == "fail":
    print(f"failing on purpose ({args[0]})")
    sys.exit(3)
elif command == "copy":
    shutil.copy(args[0], args[1])
elif command == "sleep":
    with open(args[1], "w") as f:
        f.write(str(os.getpid()))
    print("sleeping", flush=True)
    time.sleep(float(args[0]))
    print("woke up")
elif command == "append":
    with open(args[0], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.3)  # widen the window in which a second claimant could run it too
    with open(args[1], "w") as f:
        f.write("done")
elif command == "echo":
    with open(args[0]) as f:
        job = json.load(f)
    with open(args[1], "w") as f:
        json.dump(job["parameters"], f)
