# Case 2: N jobs, each consuming the output of the one before.
N = int(config["ntasks"])

rule all:
    input: f"out/c{N - 1}/f"

rule c:
    input: lambda wc: [] if wc.i == "0" else f"out/c{int(wc.i) - 1}/f"
    output: "out/c{i}/f"
    wildcard_constraints: i=r"\d+"
    shell: "touch {output}"
