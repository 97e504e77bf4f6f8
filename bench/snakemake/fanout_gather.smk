# Case 4: one root job, N jobs consuming its output, one job gathering all N.
N = int(config["ntasks"])

rule all:
    input: "out/gather/f"

rule root:
    output: "out/root/f"
    shell: "touch {output}"

rule w:
    input: "out/root/f"
    output: "out/w{i}/g"
    wildcard_constraints: i=r"\d+"
    shell: "touch {output}"

rule gather:
    input: expand("out/w{i}/g", i=range(N))
    output: "out/gather/f"
    shell: "touch {output}"
