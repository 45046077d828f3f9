"""Template helpers for the pages: the organisation switcher, number formats and verdicts."""

from typing import Any

from django import template

from jobs.models import Prediction
from jobs.pages.organisations import current_organisation, organisations_for
from jobs.services import verdicts

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
    """What to show of a prediction, or of a row of services.batch_recordings (None without one)."""
    if isinstance(item, Prediction):
        return verdicts.for_prediction(item)
    return verdicts.for_row(item)
