"""count_characters: count the characters of the input file into output.json."""
import argparse
import json

parser = argparse.ArgumentParser()
parser.add_argument("--input", required=True)
parser.add_argument("--output", required=True)
parser.add_argument("--include-whitespace", choices=["true", "false"], default="true")
args = parser.parse_args()
with open(args.input) as f:
    text = f.read()
if args.include_whitespace == "false":
    text = "".join(c for c in text if not c.isspace())
with open(args.output, "w") as f:
    json.dump({"num_characters": len(text)}, f)
print(f"{len(text)} characters")
