"""The hash's collation is current ICU's: Node (the hosted service's runtime) is the oracle,
over definitions whose names use a code point from every 16-code-point range of Unicode
(so every block, whose starts are multiples of 16), assigned or not."""
import json
import os
import random
import shutil
import subprocess

import pytest

from dendro_bridge import hash as dendro_hash
from dendro_bridge.hash import job_definition_hash, locale_compare_key

# The service's hash, restated: sort the three lists in place with localeCompare (the default
# locale), JSON.stringify with every key sorted, SHA-1.
NODE_HASH = r"""
const crypto = require('crypto');
const locale = new Intl.Collator().resolvedOptions().locale;
if (locale !== 'en-US') throw new Error('default locale is ' + locale);
const definitions = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const hashes = definitions.map((d) => {
  for (const k of ['inputFiles', 'outputFiles', 'parameters']) d[k].sort((a, b) => a.name.localeCompare(b.name));
  const keys = [];
  JSON.stringify(d, (k, v) => { keys.push(k); return v; });
  keys.sort();
  return crypto.createHash('sha1').update(JSON.stringify(d, keys)).digest('hex');
});
process.stdout.write(JSON.stringify({icu: process.versions.icu, hashes}));
"""
SURROGATES = range(0xD800, 0xE000)


def node() -> str:
    path = shutil.which("node")
    if path is None:
        message = "node is not installed: it is the oracle of the collation"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def code_points(rng: random.Random, count: int) -> list[str]:
    """One code point of every 16-code-point range, in random order, then random ones."""
    starts = [s for s in range(0, 0x110000, 16) if s not in SURROGATES]
    rng.shuffle(starts)
    chars = [chr(s + rng.randrange(16)) for s in starts]
    while len(chars) < count:
        c = rng.randrange(0x110000)
        if c not in SURROGATES:
            chars.append(chr(c))
    return chars


def definitions(n: int) -> list[dict]:
    rng = random.Random(20261201)
    chars = iter(code_points(rng, n * 14))
    out = []
    for _ in range(n):
        c = [next(chars) for _ in range(14)]
        # Names sharing prefixes, with ASCII letters, digits and punctuation beside the
        # characters, so that every pair is compared on something else than its first letter.
        params = [c[0], "a" + c[1], c[2] + "b", c[3] + c[4], "A" + c[5], c[6] + "_" + c[7]]
        out.append({
            "appName": "app", "processorName": "proc",
            "inputFiles": [{"name": n, "fileBaseName": "f", "url": "u"} for n in (c[8], c[9] + "1", "x" + c[10])],
            "outputFiles": [{"name": n, "fileBaseName": "f"} for n in (c[11], c[12] + ".", c[13] + c[11])],
            "parameters": [{"name": n, "value": n} for n in params],
        })
    return out


def test_hash_equals_node_on_generated_definitions_across_unicode():
    defs = definitions(5200)
    covered = {ord(ch) // 16 for d in defs for k in ("inputFiles", "outputFiles", "parameters")
               for item in d[k] for ch in item["name"]}
    assert len(covered) == (0x110000 - len(SURROGATES)) // 16  # every 16-code-point range
    result = subprocess.run([node(), "-e", NODE_HASH], input=json.dumps(defs), capture_output=True, text=True,
                            timeout=300, env={**os.environ, "LANG": "en_US.UTF-8", "LC_ALL": "en_US.UTF-8"})
    assert result.returncode == 0, result.stderr[-2000:]
    node_result = json.loads(result.stdout)
    ours = [job_definition_hash(d) for d in defs]
    differ = [i for i, (a, b) in enumerate(zip(ours, node_result["hashes"])) if a != b]
    used = dendro_hash.collation() if hasattr(dendro_hash, "collation") else "pyuca"
    print(f"{len(defs)} definitions, {len(covered)} ranges of 16 code points: {len(defs) - len(differ)} hashes "
          f"equal to Node's (ICU {node_result['icu']}); ours use {used}")
    assert not differ, f"{len(differ)} of {len(defs)} differ, e.g. {defs[differ[0]]}"


def test_emoji_and_symbols_in_icu_order():
    """Unicode 14's U+1FAE0 sorts among the emoji, before the currency symbols, digits and
    letters (pyuca's Unicode 9 table puts it last)."""
    assert sorted(["😀", "🫠", "a", "0", "€"], key=locale_compare_key) == ["🫠", "😀", "€", "0", "a"]
