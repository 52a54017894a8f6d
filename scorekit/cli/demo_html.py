"""``index.html`` of the demo folder: every image with its one-line caption, and the headline numbers."""

from __future__ import annotations

import html
import os

STYLE = """body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}
figure{margin:1.5em 0}figure img{image-rendering:pixelated;max-width:100%;border:1px solid #ccc}
figcaption{margin-top:.3em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}"""


def write_index(out: str, figures: list[dict], metrics: list[tuple[str, str]], title: str = "scorekit demo") -> str:
    """Write ``out/index.html`` showing ``figures`` (dicts with ``file`` and ``caption``) and a metrics table.

    Args:
        out: the demo folder (images are referenced relative to it).
        figures: in display order; each ``file`` must exist in ``out``.
        metrics: ``(name, value)`` rows of the headline table.

    Returns:
        The path of the written file.
    """
    missing = [f["file"] for f in figures if not os.path.isfile(os.path.join(out, f["file"]))]
    if missing:
        raise FileNotFoundError(f"index.html would reference missing images {missing} in {out}")
    rows = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in metrics)
    figs = "\n".join(
        f'<figure id="{html.escape(os.path.splitext(f["file"])[0])}"><img src="{html.escape(f["file"])}" '
        f'alt="{html.escape(f["caption"])}"><figcaption>{html.escape(f["caption"])}</figcaption></figure>'
        for f in figures)
    page = (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n"
            f"<table><tr><th>measure</th><th>value</th></tr>\n{rows}</table>\n{figs}\n"
            f"<p>Numbers and images: summary.json beside this page.</p></body></html>\n")
    path = os.path.join(out, "index.html")
    with open(path, "w") as f:
        f.write(page)
    return path
