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
from tests.conftest import REPO, SHIPPED  # noqa: E402
from tests.gstc.test_invalid_corpus import CORPUS_FILES  # noqa: E402
from tests.yaml_server import YamlServer, corpus_flags, missing  # noqa: E402


def main() -> None:
    problem = missing()
    if problem:
        sys.exit(problem)
    schema = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "schema" / "gstc.schema.json"
    # Every file gets the schema by association, so an old schema is also used for the shipped specs.
    server = YamlServer(REPO, {schema: ["*.yaml"]})
    try:
        flags = corpus_flags(server, CORPUS_FILES)
        text = {p: re.sub(r"^# yaml-language-server:.*\n", "\n", p.read_text()) for p in SHIPPED}  # keep line numbers
        false = sum(bool(server.open(p, t)) for p, t in text.items())
    finally:
        server.close()
    flagged, on_line = (sum(f[i] for f in flags.values()) for i in (0, 1))
    print(f"invalid corpus: {len(flags)} specs, {flagged} flagged, {on_line} on a line gstc names")
    print(f"shipped specs: {len(SHIPPED)}, {false} flagged")


if __name__ == "__main__":
    main()
