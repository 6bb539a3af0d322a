"""Renderings of a :class:`~govern.documents.model.Document`: Markdown, self-contained HTML, PDF, JSON.

Each one opens with the disclaimer (an aid, not legal advice) and ends with the list of fields to be
completed, so no rendering can be mistaken for a finished, reviewed document. The HTML follows the
report's rules (no external request: the same Content-Security-Policy); the PDF is WeasyPrint over it.
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, StrictUndefined

from govern.documents.model import TO_BE_COMPLETED, Document
from govern.errors import GovernError

DOCUMENT_FORMATS: tuple[str, ...] = ("md", "html", "pdf", "json")

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<title>{{ d.title }}</title>
<style>
body{font-family:"DejaVu Sans",system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
.disclaimer{border:2px solid #b45309;background:#fffbeb;padding:.6rem 1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top;word-break:break-word}
th{background:#f3f4f6}.todo{color:#b91c1c;font-style:italic}.src{color:#6b7280;font-size:.8rem}
</style></head><body>
<h1>{{ d.title }}</h1>
<p class="disclaimer"><strong>{{ d.disclaimer }}</strong></p>
<p>Follows: {{ d.basis }}.<br>Run <code>{{ d.run_id }}</code> ({{ d.run_name }}); generated {{ d.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC") }} by {{ d.generator }} from {{ d.db }}.</p>
{% for s in d.sections %}
<h2>{{ s.title }}</h2>
{% if s.fields %}<table><tr><th>Field</th><th>Value</th><th>Source</th></tr>
{% for f in s.fields %}<tr><td>{{ f.label }}</td>{% if f.value is none %}<td class="todo">{{ todo }}</td><td></td>{% else %}<td>{{ f.value }}</td><td class="src">{{ f.source }}</td>{% endif %}</tr>
{% endfor %}</table>{% endif %}
{% for t in s.tables %}<h3>{{ t.title }}</h3><table><tr>{% for c in t.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for r in t.rows %}<tr>{% for v in r %}<td{% if v == todo %} class="todo"{% endif %}>{{ v }}</td>{% endfor %}</tr>{% endfor %}
{% if not t.rows %}<tr><td colspan="{{ t.columns | length }}" class="todo">none recorded</td></tr>{% endif %}</table>
{% endfor %}
{% for n in s.notes %}<p class="src">Note: {{ n }}</p>{% endfor %}
{% endfor %}
<h2>To be completed</h2>
{% if d.to_be_completed %}<ul>{% for x in d.to_be_completed %}<li>{{ x }}</li>{% endfor %}</ul>
{% else %}<p>Every field has a value; review each before use.</p>{% endif %}
</body></html>
"""


@lru_cache(maxsize=1)
def _template() -> object:
    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(_HTML)


def render_html(document: Document) -> str:
    from govern.report.html import CSP

    template = _template()
    return str(template.render(d=document, csp=CSP, todo=TO_BE_COMPLETED))  # type: ignore[attr-defined]  # a jinja2 Template


def _md(text: str) -> str:
    """A table cell: no line breaks, no column separators."""
    return " ".join(text.split()).replace("|", "\\|")


def render_markdown(document: Document) -> str:
    d = document
    lines = [f"# {d.title}", "", f"> **{d.disclaimer}**", "",
             f"Follows: {d.basis}.  ", f"Run `{d.run_id}` ({_md(d.run_name)}); generated "
             f"{d.generated_at.strftime('%Y-%m-%d %H:%M:%S UTC')} by {d.generator} from {d.db}.", ""]
    for s in d.sections:
        lines += [f"## {s.title}", ""]
        if s.fields:
            lines += ["| Field | Value | Source |", "| --- | --- | --- |"]
            lines += [f"| {_md(f.label)} | {_md(f.value) if f.value is not None else f'*{TO_BE_COMPLETED}*'} | "
                      f"{f.source or ''} |" for f in s.fields]
            lines.append("")
        for t in s.tables:
            lines += [f"**{t.title}**", "", "| " + " | ".join(t.columns) + " |",
                      "|" + " --- |" * len(t.columns)]
            lines += ["| " + " | ".join(_md(v) for v in r) + " |" for r in t.rows] or \
                     ["| " + " | ".join(["none recorded"] + [""] * (len(t.columns) - 1)) + " |"]
            lines.append("")
        lines += [f"*Note: {n}*" for n in s.notes]
        if s.notes:
            lines.append("")
    lines += ["## To be completed", ""]
    lines += [f"- {x}" for x in d.to_be_completed] or ["Every field has a value; review each before use."]
    return "\n".join(lines) + "\n"


def render_json(document: Document) -> str:
    return document.model_dump_json(indent=2) + "\n"


def render_pdf(document: Document) -> bytes:
    import logging

    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Pango shared libraries are missing
        from govern.report.pdf import PDFUnavailableError

        raise PDFUnavailableError(
            f"PDF output needs WeasyPrint and Pango ({exc}). Install them: pip install 'govern[pdf]' and "
            "apt-get install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core") from None
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    pdf: bytes | None = weasyprint.HTML(string=render_html(document), base_url=None).write_pdf()
    assert pdf is not None  # write_pdf without a target returns the bytes
    return pdf


def render_document(document: Document, fmt: str) -> bytes:
    if fmt == "md":
        return render_markdown(document).encode()
    if fmt == "html":
        return render_html(document).encode()
    if fmt == "json":
        return render_json(document).encode()
    if fmt == "pdf":
        return render_pdf(document)
    raise GovernError(f"unknown document format '{fmt}' (choose one of {', '.join(DOCUMENT_FORMATS)})")
