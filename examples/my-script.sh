#!/usr/bin/env bash
# Called by examples/script_call.py with calls("my-script.sh"): drypipe runs it from
# $__pipeline_code_dir (the directory of the pipeline's module), with the task's inputs
# and outputs in the environment, in $__task_output_dir.
echo "my-script.sh runs from $__pipeline_code_dir for task $__task_key"
echo $(( x * x )) > $result
# output variables are exported, as in bash snippets
export square=$(( x * x ))
