"""One self-contained HTML page that shows a finished run, built from its artifact directory.

>>> from nba_pipeline.html_report import write_html_report
>>> write_html_report("artifacts_edge")            # doctest: +SKIP
PosixPath('artifacts_edge/reports/report.html')

The page reads only what the run wrote (``reports/pipeline_report.json``, the CSV tables, the
chunk records and the trade-off PNGs) and fetches nothing: the images are base64 data URIs,
the style sheet and the small script that sorts the sweep table are inline, and a Content
Security Policy forbids every other source.  Two plots are drawn here from the tables (the
operator time per chunk and the chunk memory against the budget) with matplotlib's object
API on an Agg canvas and without the PNG "Software" entry.  The page carries no timestamp
of its own, so the same artifacts always give the same bytes.  A section whose artifacts are
absent (a ``--mode batch`` run has no streaming, benchmark or sweep) says so instead.

The modules: :mod:`.page` assembles and writes the page (with its style sheet and script),
:mod:`.loading` reads the artifacts, :mod:`.sections`, :mod:`.modes` and :mod:`.quality`
render the sections, :mod:`.figures` draws the two plots, :mod:`.markup` builds the HTML
elements and :mod:`.values` formats the values shown in them.
"""

from .page import render_html_report, write_html_report

__all__ = ["render_html_report", "write_html_report"]
