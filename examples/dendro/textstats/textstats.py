"""The processors of the `textstats` app: `upper JOB_FILE` and `stats JOB_FILE`.

JOB_FILE is the JSON file the compute resource writes for each job: local paths of its
`inputs` and `outputs`, and its `parameters`.  `stats` also writes its counts to the output
`output_vars`, from which drypipe's Dendro executor sets the task's output variables."""
import json
import sys
import time

command, job_file = sys.argv[1], sys.argv[2]
with open(job_file) as f:
    job = json.load(f)
inputs, outputs, parameters = job["inputs"], job["outputs"], job["parameters"]
with open(inputs["input"]) as f:
    text = f.read()

if command == "upper":
    time.sleep(float(parameters.get("delay_sec") or 0))
    with open(outputs["output"], "w") as f:
        f.write(text.upper().rstrip("\n") + parameters.get("suffix", "") + "\n")
    print(f"upper-cased {len(text)} characters")
elif command == "stats":
    counts = {"lines": len(text.splitlines()), "words": len(text.split()), "chars": len(text)}
    for name in ("output", "output_vars"):
        with open(outputs[name], "w") as f:
            json.dump(counts, f)
    print(f"counts: {counts}")
else:
    sys.exit(f"unknown command {command}")
