"""index.html: a self-contained page (inline CSS) with the tables and the PNGs next to it."""

from __future__ import annotations

import re
from html import escape

from aft.report.runs import runs_table_html
from aft.report.sections import ReportContent, fmt_wall
from aft.report.tables import Table

CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1400px;
       color: #222; padding: 0 1em; }
h1, h2 { font-weight: 600; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
.scroll { max-width: 100%; overflow-x: auto; margin: .8em 0; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 13px; }
.note { color: #666; font-size: 13px; } .empty { color: #a33; font-style: italic; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
nav a { margin-right: 1em; }
.flag { color: #c00; font-weight: 600; white-space: normal; }
"""


_LINK = re.compile(r"^\[([^\]]+)\]\(([^)\s]+)\)$")


def _cell(cell: str) -> str:
    """An escaped cell; a markdown link ``[text](href)`` (kept students) becomes an ``<a>``."""
    m = _LINK.match(cell)
    return f'<a href="{escape(m.group(2))}">{escape(m.group(1))}</a>' if m else escape(cell)


def table_html(table: Table) -> str:
    """The table as an HTML <table> (or its empty note) with its footnotes."""
    if not table.rows:
        return f'<p class="empty">{escape(table.empty_note or "No data.")}</p>\n'
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = "\n".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    # wide tables scroll inside their own box: the page never overflows its width
    out = f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>\n'
    if table.notes:
        out += '<ul class="note">' + "".join(f"<li>{escape(n)}</li>" for n in table.notes) + "</ul>\n"
    return out


def render_html(content: ReportContent) -> str:
    """The whole page."""
    commands = "<pre>" + escape("\n".join(content.commands)) + "</pre>\n"
    nav = "<nav>" + "".join(f'<a href="#{t.key}">{escape(t.title)}</a>' for t in content.tables)
    nav += '<a href="#plots">Plots</a>' if content.plots else ""
    nav += '<a href="#runs">Runs</a></nav>\n' if content.runs else "</nav>\n"
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>aft results</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<h1>aft results</h1>\n",
        f"<p>{content.n_records} run records ({content.n_final} final, {content.n_select} select-phase); "
        f"total wall time of all runs: {escape(fmt_wall(content.wall_s))}.</p>\n",
        nav,
    ]
    collapsed = [n for n in content.notes if n.startswith("warning: collapsed")]
    if collapsed:  # runs that never left chance are a defect: shown before any number
        parts.append('<div class="collapsed" style="border:2px solid #c00;padding:0.5em;margin:1em 0">'
                     f"<strong>{len(collapsed)} group(s) of runs never left chance</strong> (see docs/regularizers.md)"
                     "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in collapsed) + "</ul></div>\n")
    for t in content.tables:
        parts += [f'<h2 id="{t.key}">{escape(t.title)}</h2>\n', f"<p>{escape(t.description)}</p>\n", commands,
                  f'<p class="note">{escape(content.totals_line(t))}</p>\n', table_html(t)]
    if content.plots:
        parts.append('<h2 id="plots">Plots</h2>\n')
        for p in content.plots:
            parts.append(f'<figure><img src="{escape(p.name)}" alt="{escape(p.caption)}">'
                         f"<figcaption>{escape(p.caption)}</figcaption></figure>\n")
    if content.runs:
        n_flag = sum(1 for r in content.runs if r.flag)
        parts.append('<h2 id="runs">Runs</h2>\n'
                     f"<p>{len(content.runs)} final runs ({n_flag} flagged as collapsed). <em>run</em>: the run's "
                     "configuration (runs.html); <em>student</em>: the saved student where `aft compare --keep` "
                     "kept it.</p>\n" + runs_table_html(content.runs))
    if content.notes:
        parts.append("<h2>Notes</h2>\n<ul>" + "".join(f"<li>{escape(n)}</li>" for n in content.notes) + "</ul>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)
