"""MkDocs hooks (mkdocs.yml: `hooks:`): the reference pages are generated from the code at every build.

docs/reference/cli.md comes from the typer app and docs/reference/spec.md from the spec's Pydantic
models (gstc.reference), so neither can drift from the code; they are never committed.
"""

from __future__ import annotations

from mkdocs.structure.files import File, Files


def on_files(files: Files, config) -> Files:
    from gstc.reference import cli_markdown, spec_markdown

    for uri, text in (("reference/cli.md", cli_markdown()), ("reference/spec.md", spec_markdown())):
        files.append(File.generated(config, uri, content=text))
    return files
