"""How many invalid-corpus specs the real yaml-language-server flags with a schema, and on the line gstc names.

    npm ci --prefix tests/editor
    python scripts/editor-corpus.py                      # the committed schema
    git show REV:schema/gstc.schema.json > /tmp/old.json && python scripts/editor-corpus.py /tmp/old.json

Also counts the shipped specs the server flags (there should be none).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.yaml_server import YamlServer, missing  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    problem = missing()
    if problem:
        sys.exit(problem)
    schema = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "schema" / "gstc.schema.json"
    corpus = sorted((REPO / "tests" / "gstc" / "invalid").glob("*.yaml"))
    shipped = sorted([*REPO.joinpath("specs").rglob("*.yaml"), *REPO.joinpath("examples").glob("*.yaml")])
    # Every file gets the schema by association, so an old schema is also used for the shipped specs.
    server = YamlServer(REPO, {schema: ["*.yaml"]})
    try:
        flagged = at_line = 0
        for path in corpus:
            lines = {d["range"]["start"]["line"] + 1 for d in server.open(path)}
            expected = {int(n) for n in re.findall(r"^# expect: (\d+):", path.read_text(), re.M)}
            flagged += bool(lines)
            at_line += bool(lines & expected)
        text = {p: re.sub(r"^# yaml-language-server:.*\n", "\n", p.read_text()) for p in shipped}  # keep line numbers
        false = sum(bool(server.open(p, t)) for p, t in text.items())
    finally:
        server.close()
    print(f"invalid corpus: {len(corpus)} specs, {flagged} flagged, {at_line} on a line gstc names")
    print(f"shipped specs: {len(shipped)}, {false} flagged")


if __name__ == "__main__":
    main()
