"""hello_world_2: write a greeting to the output text file."""
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--name", default="world")
parser.add_argument("--output", required=True)
args = parser.parse_args()
with open(args.output, "w") as f:
    f.write(f"Hello, {args.name}!")
print(f"wrote {args.output}")
