#!/usr/bin/env bash
# Called by examples/pipeline_config.py with calls("greet.sh"): found in the pipeline_code_dir
# given to DryPipe.create_pipeline (examples/data/pipeline_config_code), not in examples/.
echo "greet.sh from $__pipeline_code_dir" > $greeting
echo "containers dir: $__containers_dir" >> $greeting
echo "GREETING=${GREETING:-unset}" >> $greeting
