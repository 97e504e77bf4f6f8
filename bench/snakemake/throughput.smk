# Case 1 (and 3): N independent jobs, each touching its output file.
N = int(config["ntasks"])

rule all:
    input: expand("out/t{i}/f", i=range(N))

rule t:
    output: "out/t{i}/f"
    shell: "touch {output}"
