"""The client's progress bar total: known from the archive's listing, never shrinking."""

from lubdub_client.batches import files_to_analyse


def test_the_listing_count_is_the_total_while_rows_are_still_written() -> None:
    assert files_to_analyse({"total": 40, "expected_total": 100, "rejected": 3}) == 97


def test_the_rows_count_once_they_are_all_written_or_the_listing_is_unknown() -> None:
    assert files_to_analyse({"total": 100, "expected_total": 100, "rejected": 0}) == 100
    assert files_to_analyse({"total": 40, "expected_total": None, "rejected": 0}) == 40
    assert files_to_analyse({"total": 5, "rejected": 1}) == 4  # a server without the field


def test_it_is_never_negative() -> None:
    assert files_to_analyse({"total": 0, "expected_total": None, "rejected": 2}) == 0
