"""hello_world_1: print a greeting (the console output is the job's only result)."""
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="world")
args = parser.parse_args()
print(f"Hello, {args.name}!")
