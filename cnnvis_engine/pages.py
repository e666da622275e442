"""The engine's HTML documents (the report, the audit report, the report command's index) from Jinja2 templates in
`templates/`: one base page with the shared CSS, every value escaped by autoescape, a missing value an error."""

from __future__ import annotations

from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("cnnvis_engine", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(template: str, **values: object) -> str:
    """`templates/<template>` filled with `values`; text is escaped, so a label never becomes markup."""
    return _environment().get_template(template).render(**values)
