"""Text cells of a CSV that a spreadsheet will show as text instead of running them.

Excel, LibreOffice and Google Sheets take a cell that begins with ``=``, ``+``,
``-`` or ``@`` for a formula, and a leading tab or carriage return can hide one:
a recording named ``=HYPERLINK(...).wav`` would run as a formula on the
clinician's machine (OWASP "CSV injection"). Such text gets a leading single
quote, which spreadsheets display as text. Numbers are written as they are
(callers pass only text cells), so a negative value in a numeric column stays a
number.
"""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(text: str) -> str:
    """``text`` as a CSV cell that no spreadsheet evaluates."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
