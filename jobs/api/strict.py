"""JSON request bodies of the types the schema gives, not whatever DRF can coerce.

DRF's fields read `0` as the text "0", `"0.5"` as a number, `1` as true and an
integer as a UUID, so a client that sends the wrong type is never told. In a
JSON body each value must already be of its field's JSON type; form bodies,
where every value is text, are left to the fields.
"""

from typing import Any

from rest_framework import serializers

_TEXT = (
    serializers.CharField,
    serializers.ChoiceField,
    serializers.UUIDField,
    serializers.DateField,
    serializers.DateTimeField,
)


def type_error(field: serializers.Field, value: Any) -> str | None:
    """Why `value` is not of `field`'s JSON type, or None when it is."""
    if value is None:
        return None  # the field itself says whether null is allowed
    if isinstance(field, serializers.ListField):
        if not isinstance(value, list):
            return "Expected a list."
        return next((error for item in value if (error := type_error(field.child, item))), None)
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Expected true or false."
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "Expected an integer."
    if isinstance(field, serializers.FloatField):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return None if number else "Expected a number."
    if isinstance(field, _TEXT):
        return None if isinstance(value, str) else "Expected a string."
    return None


class StrictJsonSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if type(data) is dict:  # a parsed JSON object; a QueryDict is a form
            errors = {
                name: [error]
                for name, field in self.fields.items()
                if name in data and (error := type_error(field, data[name]))
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)
