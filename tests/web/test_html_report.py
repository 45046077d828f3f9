"""The batch report's HTML page: escaped text, one table line per file, every part in place."""

from typing import Any

from jobs import storage
from jobs.models import Batch, Membership, Report
from jobs.services import reports, reviews
from jobs.services.reports import write_reports
from tests import factories
from tests.web import builders

MARKUP = "<script>alert(\"x\")</script> & 'q'"
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;q&#x27;"


def _finished_batch(**fields: Any) -> tuple[Batch, Any]:
    membership = factories.MembershipFactory(role=Membership.Role.ADMIN)
    return builders.completed_batch(membership.organisation, membership.user, **fields), membership.user


def _page(batch: Batch) -> str:
    return storage.read_bytes(Report.objects.get(batch=batch, format="html").storage_key).decode()


def _file_lines(page: str) -> tuple[str, list[str]]:
    """The page up to the table of files, and what follows, line by line."""
    head, _, files = page.rpartition("<tbody>")
    return head, files.split("\n")


def test_it_escapes_every_text_an_uploader_or_reviewer_wrote(db: None) -> None:
    batch, member = _finished_batch(name=f"week {MARKUP}", total_count=2)
    recording = factories.RecordingFactory(batch=batch, path=f"clinic/{MARKUP}.wav", label="abnormal")
    factories.PredictionFactory(recording=recording, raw_probability=0.9, heart_rate_bpm=250.0)
    builders.rejected_recording(batch, "notes.txt", f"not audio: {MARKUP}")
    reviews.review_recording(member, recording, batch=batch, label="normal", note=MARKUP)

    write_reports(batch.pk)
    page = _page(batch)

    assert "<script>" not in page
    assert f"<title>LubDub report: week {ESCAPED}</title>" in page
    row = next(line for line in _file_lines(page)[1] if "clinic/" in line)
    assert row.startswith(
        f"<tr><td>clinic/{ESCAPED}.wav</td><td></td><td></td>"  # no patient, no location
        '<td><span class="pending">not analysed</span></td>'
    )
    assert '<td>abnormal<br><span class="reasons">p(abnormal) 0.90, threshold 0.50</span></td>' in row
    assert '<td>250<br><span class="flag">check: 250 bpm' in row
    assert f" by {member.username}, " in row and row.endswith(
        f'<br><span class="reasons">{ESCAPED}</span></td></tr>'
    )
    assert f"<td>not audio: {ESCAPED}</td>" in page
    assert '<td class="">not a recognised audio file</td><td class="n">1</td>' in page  # why not analysed


def test_it_writes_one_line_per_file_across_render_groups(db: None) -> None:
    files = reports.ROWS_PER_RENDER + 3
    batch, _ = _finished_batch(name="big", total_count=files)
    builders.bulk_recordings(batch, (f"r{i:04}.wav" for i in range(files)))

    write_reports(batch.pk)
    head, lines = _file_lines(_page(batch))

    rows = lines[:-2]
    assert [row[8:13] for row in rows] == [f"r{i:04}" for i in range(files)]
    assert rows[0] == (
        "<tr><td>r0000.wav</td><td></td><td></td>"
        '<td><span class="pending">not analysed</span></td><td>normal</td>'
        '<td>normal<br><span class="reasons">p(abnormal) 0.20, threshold 0.50</span></td>'
        "<td>good</td><td></td><td></td><td></td><td></td></tr>"
    )
    assert head.endswith("<th>reason</th><th>clinician's review</th></tr></thead>")
    assert lines[-2:] == ["</tbody></table></body></html>", ""]
