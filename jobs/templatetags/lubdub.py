"""Template helpers for the pages: the organisation switcher, number formats and verdicts."""

from typing import Any

from django import template

from jobs.models import Prediction
from jobs.pages.organisations import current_organisation
from jobs.services import verdicts
from jobs.services.access import organisations_for

register = template.Library()


@register.inclusion_tag("jobs/_organisation_switcher.html", takes_context=True)
def organisation_switcher(context: dict[str, Any]) -> dict[str, Any]:
    request = context["request"]
    return {
        "request": request,
        "organisations": list(organisations_for(request.user)),
        "current": current_organisation(request),
        "csrf_token": context.get("csrf_token"),
    }


@register.filter
def percent(value: float | None, digits: int = 0) -> str:
    """0.873 -> '87 %'; empty for missing values."""
    if value is None or value == "":
        return "–"
    return f"{float(value) * 100:.{digits}f} %"


@register.filter
def seconds(value: float | None) -> str:
    """A duration in seconds as '1 min 05 s' or '12.3 s'."""
    if value is None:
        return "–"
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def get_item(mapping: dict[str, Any] | None, key: str) -> Any:
    return (mapping or {}).get(key)


@register.filter
def verdict(item: Any) -> verdicts.Verdict | None:
    """What to show of a prediction, or of a row of results.batch_recordings (None without one)."""
    if isinstance(item, Prediction):
        return verdicts.for_prediction(item)
    return verdicts.for_row(item)


# Tags and attributes a model card may use once rendered; anything else (scripts,
# event handlers, styles, iframes) is dropped, since researchers write the cards.
CARD_TAGS = {
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "br", "hr", "ul", "ol", "li", "strong", "em", "code",
    "pre", "blockquote", "table", "thead", "tbody", "tr", "th", "td", "a", "img",
}  # fmt: skip
CARD_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"}}


@register.filter
def model_card(text: str) -> str:
    """A model card's Markdown as sanitised HTML; wide tables scroll inside their own box."""
    import markdown
    import nh3
    from django.utils.safestring import mark_safe

    html = markdown.markdown(text or "", extensions=["tables", "fenced_code", "sane_lists"])
    clean = nh3.clean(
        html, tags=CARD_TAGS, attributes=CARD_ATTRIBUTES, url_schemes={"http", "https", "mailto"}
    )
    wrapped = clean.replace("<table>", '<div class="table-wrap"><table>')
    wrapped = wrapped.replace("</table>", "</table></div>")
    return mark_safe(wrapped)  # noqa: S308 - sanitised by nh3 above


METRIC_NAMES = {
    "count": "Recordings",
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity (abnormal recordings found)",
    "specificity": "Specificity (normal recordings called normal)",
    "macc": "MAcc (mean of sensitivity and specificity)",
    "macro_recall": "Mean recall over classes",
    "precision": "Precision (abnormal calls that were right)",
    "f1": "F1",
    "roc_auc": "ROC AUC (ranking, 0.5 = chance)",
    "threshold": "Decision threshold",
}


@register.filter
def metric_name(key: str) -> str:
    """A metric's key as people read it: 'macc' -> 'MAcc (mean of sensitivity and specificity)'."""
    return METRIC_NAMES.get(key, key.replace("_", " ").capitalize())


@register.filter
def metric_value(value: float | int, key: str = "") -> str:
    """Counts as integers, everything else with three decimals."""
    if key == "count" or (isinstance(value, int) and not isinstance(value, bool)):
        return f"{int(value):,}"
    return f"{float(value):.3f}"
