"""The batch report as a PDF, for printing and sharing: the HTML report's figures, then every file.

Drawn with fpdf2 (pure Python, no system libraries) from the same page context
and the same per-file cells as the HTML report, so the two say the same. The
font is DejaVu Sans, which matplotlib (a server dependency) ships: file names and
notes in any European script print as written. The files' table is drawn line by
line with plain text calls, not table cells: a fifty-thousand-file batch is
about a thousand pages, and cells cost five times as much.
"""

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import IO, Any

from fpdf import FPDF
from fpdf.fonts import TTFFont

FONT = "DejaVu"
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
MARGIN = 12.0  # mm
LINE = 3.6  # mm, one line of the files' table
MAX_LINES = 4  # a longer cell is cut, with an ellipsis: the CSV holds every word
GREY = (85, 96, 107)
RULE = (213, 219, 225)
DISCLAIMER = (
    "A screening aid, not a diagnosis: an abnormal result means the recording should be reviewed "
    "by a clinician."
)


@dataclass(frozen=True)
class Column:
    title: str
    width: float  # mm


FILE_COLUMNS = (
    Column("file", 48),
    Column("patient, location", 24),
    Column("status", 15),
    Column("result", 15),
    Column("decision", 50),
    Column("quality", 13),
    Column("heart rate", 16),
    Column("truth", 14),
    Column("reason", 38),
    Column("clinician's review", 40),
)
PATIENT_COLUMNS = (
    Column("patient", 30),
    Column("verdict", 22),
    Column("why", 90),
    Column("recordings", 131),
)


@cache
def font_folder() -> Path:
    spec = find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the PDF report needs matplotlib's DejaVu fonts; install lubdub[server]")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"


class ReportPdf(FPDF):
    """A4 landscape pages with the batch's name and page number on each."""

    def __init__(self, title: str) -> None:
        super().__init__(orientation="L", unit="mm", format="A4")
        self.report_title = title
        self.table_columns: tuple[Column, ...] = ()  # repeated at the top of each page while set
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(auto=True, margin=MARGIN + 4)
        for style, name in FONT_FILES.items():
            self.add_font(FONT, style, str(font_folder() / name))
        self.set_title(title)
        self.set_creator("LubDub")

    def header(self) -> None:
        if self.page_no() > 1:
            self.set_font(FONT, size=7)
            self.set_text_color(*GREY)
            self.cell(0, 4, self.report_title, new_x="LMARGIN", new_y="NEXT")
            self.set_text_color(0)
            self.ln(1)
        if self.table_columns:
            self.columns_head(self.table_columns)

    def footer(self) -> None:
        self.set_y(-MARGIN)
        self.set_font(FONT, size=7)
        self.set_text_color(*GREY)
        self.cell(0, 4, f"LubDub · {DISCLAIMER}", align="L")
        self.set_x(MARGIN)
        self.cell(0, 4, f"page {self.page_no()} of {{nb}}", align="R")
        self.set_text_color(0)

    def columns_head(self, columns: Iterable[Column]) -> None:
        self.set_font(FONT, "B", size=7)
        self.set_fill_color(241, 244, 247)
        for column in columns:
            self.cell(column.width, LINE + 1.4, column.title, border=1, fill=True)
        self.ln(LINE + 1.4)
        self.set_font(FONT, size=7)


def write_pdf(
    context: dict[str, Any],
    *,
    review_first: IO[bytes],
    patients: IO[bytes],
    every_file: IO[bytes],
    out: IO[bytes],
) -> None:
    """The report of reports.page_context ``context``. ``review_first`` and ``every_file``
    hold one JSON line of reports.row_cells per file, ``patients`` one of
    reports.patient_cells per patient, each in its table's order."""
    # fontTools logs every step of embedding the font at INFO: not for a worker's log.
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    pdf = ReportPdf(f"LubDub screening report: {context['name']}")
    pdf.add_page()
    _title(pdf, context)
    _summary(pdf, context)
    _review_first(pdf, context, _lines(review_first))
    _patients(pdf, context, _lines(patients))
    _heading(pdf, "Every file")
    _rows(pdf, FILE_COLUMNS, map(file_cells, _lines(every_file)))
    out.write(bytes(pdf.output()))


def _review_first(pdf: ReportPdf, context: dict[str, Any], rows: Iterable[dict[str, Any]]) -> None:
    count, flagged = context["review_first_count"], context["flagged"]
    _heading(pdf, "Review first")
    if not count:
        _paragraph(pdf, f"No recording was given {flagged} or found uncertain.")
        return
    _paragraph(
        pdf,
        f"{count} recording{'s' if count != 1 else ''} given {flagged} or found uncertain, highest risk "
        "first: the probability each decision was made on. Recordings to re-record are in the full table.",
        grey=True,
    )
    _rows(pdf, FILE_COLUMNS, map(file_cells, rows))


def _patients(pdf: ReportPdf, context: dict[str, Any], rows: Iterable[dict[str, Any]]) -> None:
    found = context["patients"]
    if not found["count"]:
        return
    _heading(pdf, "Patients")
    positive = context["positive"]
    rule = (
        f"{positive.capitalize()} at any location makes the patient {positive}; otherwise an uncertain "
        "recording makes the patient uncertain, and recordings all to re-record make it re-record."
        if positive
        else "A patient gets the class all their usable recordings agree on, else uncertain."
    )
    _paragraph(
        pdf,
        f"{found['count']} patient{'s' if found['count'] != 1 else ''} named by the recordings, one verdict "
        "each: a recording counts with its clinician's review when it has one, else with the model's "
        f"decision. {rule}",
        grey=True,
    )
    _paragraph(pdf, " · ".join(f"{verdict}: {count}" for verdict, count in found["by_verdict"]))
    _rows(pdf, PATIENT_COLUMNS, map(patient_texts, rows))


def patient_texts(patient: dict[str, Any]) -> list[str]:
    """The text of each of PATIENT_COLUMNS for one of reports.patient_cells."""
    readings = "; ".join(
        f"{reading['location'] or reading['path']}: {reading['outcome']}"
        + (" (reviewed)" if reading["reviewed"] else "")
        for reading in patient["recordings"]
    )
    return [patient["patient_id"], patient["verdict"], patient["reason"], readings]


def _lines(spool: IO[bytes]) -> Iterator[dict[str, Any]]:
    spool.seek(0)
    for line in spool:
        yield json.loads(line)


def _title(pdf: ReportPdf, context: dict[str, Any]) -> None:
    summary = context["summary"]
    pdf.set_font(FONT, "B", size=16)
    pdf.multi_cell(0, 8, f"Screening report: {context['name']}", new_x="LMARGIN", new_y="NEXT")
    site = f" · site {summary['site']['name']}" if summary.get("site") else ""
    _paragraph(
        pdf,
        f"{summary['organisation']} · model {summary['model_version']}{site} · "
        f"status {context['status']} · batch {context['batch_id']}",
        grey=True,
    )
    _paragraph(pdf, DISCLAIMER)


def _summary(pdf: ReportPdf, context: dict[str, Any]) -> None:
    summary = context["summary"]
    if summary.get("shift_warning"):
        _paragraph(pdf, f"Batch shift. {summary['shift_warning']}", bold=True)
    for rule in summary.get("site_calibrations") or []:
        _paragraph(
            pdf,
            f"Decisions of {rule['predictions']} file(s) were made with the calibration of site "
            f"{rule['site']} (v{rule['version']}) instead of the model's own threshold.",
        )
    reviews = context["reviews"]
    if reviews.get("reviewed"):
        _paragraph(
            pdf,
            f"{reviews['reviewed']} recording(s) reviewed by a clinician, {reviews['overridden']} overridden "
            "(given another class than the model's). The figures here are the model's; reviews change "
            "none of them.",
        )
    else:
        _paragraph(pdf, "No recording has been reviewed by a clinician yet.")
    _cards(pdf, context["cards"])
    if context["decisions"]:
        _heading(pdf, "Decisions")
        _paragraph(
            pdf,
            "re-record: the recording is unusable, so it gets no result; uncertain: re-record or have a "
            "clinician review it. Each file's decision below shows the probability and the threshold it "
            "was made with.",
            grey=True,
        )
        _table(pdf, context["decisions"])
    _heading(pdf, "Files by status")
    _table(pdf, context["statuses"])
    if context["errors"]:
        _heading(pdf, "Why files were not analysed")
        _table(pdf, context["errors"])
    _heading(pdf, "Confidence of the predicted class")
    _histogram(pdf, context["histogram"])
    metrics = context["metrics"]
    if metrics:
        _heading(pdf, f"Against the ground truth ({metrics['labelled']} labelled files)")
        _table(pdf, metrics["matrix"])
        _table(pdf, metrics["figures"])
        _paragraph(pdf, f"Positive class: {metrics['positive_class']}.", grey=True)
    else:
        _paragraph(pdf, "No ground truth was supplied (labels.csv), so no accuracy figures.")


def _paragraph(pdf: ReportPdf, text: str, *, grey: bool = False, bold: bool = False) -> None:
    pdf.set_font(FONT, "B" if bold else "", size=9)
    if grey:
        pdf.set_text_color(*GREY)
    pdf.multi_cell(0, 4.5, text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.ln(1.5)


def _heading(pdf: ReportPdf, text: str) -> None:
    if pdf.will_page_break(20):
        pdf.add_page()
    pdf.ln(3)
    pdf.set_font(FONT, "B", size=12)
    pdf.cell(0, 7, text, new_x="LMARGIN", new_y="NEXT")


def _cards(pdf: ReportPdf, cards: list[dict[str, Any]]) -> None:
    pdf.set_draw_color(*RULE)
    top, width = pdf.get_y(), 40.0
    for index, card in enumerate(cards):
        x = MARGIN + index % 6 * (width + 3)
        y = top + index // 6 * 17
        pdf.rect(x, y, width, 14)
        pdf.set_xy(x + 2, y + 1.5)
        pdf.set_font(FONT, "B", size=13)
        pdf.cell(width - 4, 6, str(card["value"]))
        pdf.set_xy(x + 2, y + 7.5)
        pdf.set_font(FONT, size=8)
        pdf.cell(width - 4, 5, _fit(pdf, str(card["name"]), width - 4))
    rows = (len(cards) + 5) // 6
    pdf.set_xy(MARGIN, top + rows * 17)
    pdf.set_draw_color(0)


def _table(pdf: ReportPdf, table: dict[str, Any]) -> None:
    """One of reports._table's tables; numbers right-aligned, as on the page."""
    header = table["header"]
    widths = [
        max(30.0, min(90.0, 4 + max(_width(pdf, str(c)) for c in column))) for column in _columns(table)
    ]
    pdf.set_draw_color(*RULE)
    pdf.set_font(FONT, "B", size=8)
    pdf.set_fill_color(241, 244, 247)
    for name, width in zip(header, widths, strict=True):
        pdf.cell(width, 5.5, _fit(pdf, str(name), width - 2), border=1, fill=True)
    pdf.ln(5.5)
    pdf.set_font(FONT, size=8)
    for row in table["rows"]:
        for cell, width in zip(row, widths, strict=True):
            align = "R" if cell["kind"] == "n" else "L"
            pdf.cell(width, 5, _fit(pdf, cell["text"], width - 2), border=1, align=align)
        pdf.ln(5)
    pdf.set_draw_color(0)
    pdf.ln(2)


def _columns(table: dict[str, Any]) -> list[list[str]]:
    rows = [[str(name) for name in table["header"]]] + [
        [cell["text"] for cell in row] for row in table["rows"]
    ]
    return [list(column) for column in zip(*rows, strict=True)]


def _width(pdf: ReportPdf, text: str) -> float:
    pdf.set_font(FONT, "B", size=8)
    return float(pdf.get_string_width(text))


def _histogram(pdf: ReportPdf, histogram: dict[str, Any]) -> None:
    """reports._histogram's bars, a third smaller (its SVG units are pixels)."""
    scale = 0.25
    if pdf.will_page_break(histogram["height"] * scale + 4):
        pdf.add_page()
    left, top = MARGIN, pdf.get_y()
    pdf.set_fill_color(47, 111, 159)
    pdf.set_font(FONT, size=7)
    for bar in histogram["bars"]:
        x, y = left + bar["x"] * scale, top + bar["y"] * scale
        if bar["height"]:
            pdf.rect(x, y, bar["width"] * scale, bar["height"] * scale, style="F")
        if bar["label"] != "":
            pdf.text(x + bar["width"] * scale / 2 - 1.5, y - 0.8, str(bar["label"]))
    for tick in histogram["ticks"]:
        pdf.text(left + tick["x"] * scale, top + tick["y"] * scale, tick["label"])
    pdf.set_xy(MARGIN, top + histogram["height"] * scale + 2)


def _rows(pdf: ReportPdf, columns: tuple[Column, ...], rows: Iterable[list[str]]) -> None:
    """A table of ``columns``, one row per list of texts, its titles again on each new page."""
    pdf.table_columns = columns
    pdf.set_draw_color(*RULE)
    if pdf.will_page_break(3 * LINE):
        pdf.add_page()  # the header draws the columns' titles
    else:
        pdf.columns_head(columns)
    for texts in rows:
        _row(pdf, columns, texts)
    pdf.table_columns = ()
    pdf.set_draw_color(0)


def file_cells(row: dict[str, Any]) -> list[str]:
    """The text of each of FILE_COLUMNS for one of reports.row_cells (a paragraph a line)."""
    rate = row["heart_rate"]
    if row["heart_rate_flag"]:
        rate += f"\ncheck: {row['heart_rate_note']}"
    review = row.get("review")
    reviewed = ""
    if review:
        reviewed = f"{review['label']} ({review['action']})\n{review['reviewed_by']}{review['when']}"
        if review["note"]:
            reviewed += f"\n{review['note']}"
    return [
        row["path"],
        _paragraphs(row["patient"], row["location"]),
        row["status_text"],
        row["label"],
        _paragraphs(row["outcome"], *row["notes"]),
        row["quality"],
        rate,
        row["truth"],
        row["error"],
        reviewed,
    ]


def _paragraphs(*texts: str) -> str:
    return "\n".join(text for text in texts if text)


def _row(pdf: ReportPdf, columns: tuple[Column, ...], texts: list[str]) -> None:
    wrapped = [_wrap(pdf, text, column.width - 1.6) for text, column in zip(texts, columns, strict=True)]
    height = LINE * max(1, *map(len, wrapped)) + 0.8
    if pdf.will_page_break(height):
        pdf.add_page()
    top = pdf.get_y()
    x = MARGIN
    for lines, column in zip(wrapped, columns, strict=True):
        for number, line in enumerate(lines):
            pdf.text(x + 0.8, top + LINE * (number + 1) - 0.6, line)
        x += column.width
    pdf.line(MARGIN, top + height, x, top + height)
    pdf.set_y(top + height)


def _wrap(pdf: ReportPdf, text: str, width: float) -> list[str]:
    """``text``'s paragraphs (one a line of it) in lines no wider than ``width`` mm, at most
    MAX_LINES in all (the last one then cut short)."""
    lines: list[str] = []
    for paragraph in filter(None, text.split("\n")):
        lines += _paragraph_lines(pdf, paragraph, width, room=MAX_LINES + 1 - len(lines))
        if len(lines) > MAX_LINES:
            lines = lines[:MAX_LINES]
            lines[-1] = _fit(pdf, lines[-1] + "…", width)
            break
    return lines


def _paragraph_lines(pdf: ReportPdf, text: str, width: float, *, room: int) -> list[str]:
    """One paragraph in lines no wider than ``width`` mm; no more than ``room`` of them are made."""
    if _text_width(pdf, text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if _text_width(pdf, candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = word
        while _text_width(pdf, line) > width:  # a word wider than the column: break it
            cut = _cut(pdf, line, width)
            lines.append(line[:cut])
            line = line[cut:]
        if len(lines) >= room:
            return lines  # the rest would not be shown
    return [*lines, line]


def _cut(pdf: ReportPdf, text: str, width: float) -> int:
    """How many of ``text``'s first characters fit in ``width`` mm (at least one)."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if _text_width(pdf, text[:middle]) <= width:
            low = middle
        else:
            high = middle - 1
    return low


def _fit(pdf: ReportPdf, text: str, width: float) -> str:
    """``text``, cut with an ellipsis where it is wider than ``width`` mm."""
    if _text_width(pdf, text) <= width:
        return text
    return text[: _cut(pdf, text, width - _text_width(pdf, "…"))] + "…"


def _text_width(pdf: ReportPdf, text: str) -> float:
    """``text``'s width in mm in the current font: FPDF.get_string_width's sum of the glyphs'
    widths, without its copy of the graphics state on each call (most of a long table's time)."""
    font = pdf.current_font
    assert isinstance(font, TTFFont)  # DejaVu: widths by code point, in thousandths of the size
    widths = font.cw
    return float(sum(widths[ord(char)] for char in text)) * pdf.font_size_pt * 0.001 / pdf.k
