"""Model card text: intended use, citations, data lines, caveats and sections from plain values."""

from __future__ import annotations

from ml import cards

SPREAD = {"mean": 0.7, "min": 0.65, "max": 0.75}


def test_it_marks_pascal_trained_models_research_use_unless_other_sources_dominate() -> None:
    assert cards.intended_use(["set-a", "set-b"], research_use=False) == cards.RESEARCH_USE
    assert cards.intended_use(["circor2022", "set-a", "training-a"], research_use=False) == (
        cards.SCREENING_USE + " " + cards.PASCAL_NOTE
    )
    assert cards.intended_use(["training-a"], research_use=False) == cards.SCREENING_USE
    assert cards.intended_use(["training-a"], research_use=True) == cards.RESEARCH_USE


def test_it_cites_the_datasets_trained_on() -> None:
    assert cards.citations(["set-a", "set-b"]) == [cards.PASCAL_CITATION]
    assert cards.citations(["circor2022", "training-a"]) == [cards.PHYSIONET_CITATION, cards.CIRCOR_CITATION]


def test_it_lists_the_sources_and_what_was_kept_out() -> None:
    lines = cards.data_sources(
        {"training-a": 40, "training-b": 12}, holdout=["training-b"], validation_share=0.15,
        calibrated=True, test_share=0.1, external={"circor": 30},
    )  # fmt: skip
    assert lines == [
        "training-a: 40 recordings",
        "training-b: 12 recordings (held out, not trained on)",
        "15% of each source group and class kept for validation "
        "(early stopping; the threshold comes from the calibration)",
        "10% of each group and class kept out as a test set",
        "external check only (never trained on): circor, 30 recordings",
    ]
    plain = cards.data_sources({"training-a": 40}, holdout=[], validation_share=0.15, calibrated=False)
    assert plain[-1].endswith("(early stopping, decision threshold)")


def test_it_gives_the_score_range_on_unseen_sites_in_the_caveats() -> None:
    assert cards.caveats({"validation": {"count": 3}}) == cards.NOTES
    metrics = {
        "leave_one_folder_out": {"groups": {"a": {"macc": 0.61, "roc_auc": 0.7}}},
        "external_circor": {"groups": {"b": {"macc": 0.72, "roc_auc": 0.81}}},
    }
    text = cards.caveats(metrics)
    assert "MAcc 0.61-0.72 with ROC AUC 0.70-0.81" in text
    assert text.endswith(cards.NOTES)


def test_it_tabulates_each_held_out_source_with_its_range_over_seeds() -> None:
    summary = {
        "folds": {"a": {"macc": SPREAD, "sensitivity": SPREAD, "specificity": None, "roc_auc": SPREAD}},
        "mean_macc": SPREAD, "mean_roc_auc": SPREAD, "lowest_sensitivity_or_specificity": SPREAD,
    }  # fmt: skip
    assert cards.source_table(summary) == [
        "| held-out source | MAcc | Se | Sp | ROC AUC |",
        "|---|---|---|---|---|",
        "| a | 0.700 (0.650-0.750) | 0.700 (0.650-0.750) | - | 0.700 (0.650-0.750) |",
    ]
    title, text = cards.leave_one_source_out_section(summary, seeds=[7, 8])
    assert title == "Leave one source out"
    assert "over seeds 7, 8" in text and text.startswith("| held-out source |")


def test_it_describes_the_calibration_then_what_the_model_is_not_for() -> None:
    nested = {"a": {"sensitivity": 0.8, "specificity": 0.6, "macc": 0.7}}
    calibration = {
        "slope": 1.5, "intercept": -0.25, "threshold": 0.4, "margin": 0.05,
        "metrics": {"nested_leave_one_source_out": nested},
    }  # fmt: skip
    (title, text), not_for = cards.calibration_sections(calibration)
    assert title == "Calibration and decisions"
    assert "slope 1.500, intercept -0.250" in text and "threshold 0.40" in text
    assert text.endswith("| a | 0.800 | 0.600 | 0.700 |")
    assert not_for == ("Must not be used for", cards.NOT_FOR)


def test_the_calibration_table_shows_the_uncertain_band_when_the_figures_have_it() -> None:
    nested = {
        "a": {"sensitivity": 0.8, "specificity": 0.6, "macc": 0.7, "uncertain_share": 0.25,
              "decided_sensitivity": 0.9, "decided_specificity": 0.7, "decided_macc": 0.8},
        "b": {"sensitivity": 0.5, "specificity": 0.5, "macc": 0.5, "uncertain_share": 1.0,
              "decided_sensitivity": float("nan"), "decided_specificity": float("nan"),
              "decided_macc": float("nan")},
    }  # fmt: skip
    calibration = {
        "slope": 1.0, "intercept": 0.0, "threshold": 0.5, "margin": 0.1,
        "metrics": {"nested_leave_one_source_out": nested},
    }  # fmt: skip
    (_, text), _ = cards.calibration_sections(calibration)
    assert "| source | Se | Sp | MAcc | uncertain | MAcc decided |" in text
    assert "| a | 0.800 | 0.600 | 0.700 | 0.25 | 0.800 |" in text
    assert text.endswith("| b | 0.500 | 0.500 | 0.500 | 1.00 | - |")


def test_it_lays_out_a_card_with_the_sections_before_the_caveats() -> None:
    card = cards.model_card(
        name="screening", version="3.0.0", intended_use=cards.SCREENING_USE, data_sources=["a: 3 recordings"],
        citations=[cards.PHYSIONET_CITATION], settings={"epochs": 20},
        metrics={"validation": {"count": 3, "macc": 0.75}}, notes=cards.NOTES,
        sections=[("Leave one source out", "table")],
    )  # fmt: skip
    headings = [line for line in card.splitlines() if line.startswith("#")]
    assert headings == [
        "# screening 3.0.0", "## Intended use", "## Training data", "## Training settings",
        "## Measured results", "## Leave one source out", "## Caveats", "## Citations",
    ]  # fmt: skip
    assert "| validation | 3 | 0.750 |" in card
