"""The comparison table is written between markers and nothing else changes."""

from __future__ import annotations

from pathlib import Path

from ml.compare import END_MARKER, START_MARKER, table, update_doc

ROW = {
    "architecture": "gru",
    "params": 5634,
    "train_s": 88.6,
    "windows_per_s": 7967.5,
    "validation": {"macc": 0.81, "roc_auc": 0.9},
    "holdout": {"macc": 0.6, "sensitivity": 0.7, "specificity": 0.5, "roc_auc": 0.65},
}


def test_it_formats_one_row_per_architecture() -> None:
    text = table([ROW], caption="caption")
    assert "| gru | 5,634 | 89 | 7968 | 0.810 | 0.900 | 0.600 | 0.700 | 0.500 | 0.650 |" in text


def test_it_replaces_only_the_marked_block(tmp_path: Path) -> None:
    doc = tmp_path / "models.md"
    doc.write_text(f"# Models\n\nintro\n\n{START_MARKER}\nold\n{END_MARKER}\n\n## After\n")
    update_doc(doc, "new table")
    text = doc.read_text()
    assert "old" not in text and "new table" in text
    assert text.startswith("# Models\n\nintro") and text.endswith("## After\n")


def test_it_appends_the_block_when_markers_are_missing(tmp_path: Path) -> None:
    doc = tmp_path / "models.md"
    update_doc(doc, "table")
    assert doc.read_text().count(START_MARKER) == 1
