"""The typed model: the CRD API (source of truth), validation and spec objects. Pure."""

from stackscaler.model.spec import Resource, ScalingSpec, parse_resource
from stackscaler.model.validation import validate_document

__all__ = ["Resource", "ScalingSpec", "parse_resource", "validate_document"]
