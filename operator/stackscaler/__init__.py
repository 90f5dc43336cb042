"""stackscaler: autoscale every elastic part of an AWS web stack from Kubernetes.

The package is layered (see docs/architecture.md):

* :mod:`stackscaler.model` and :mod:`stackscaler.policy` are pure: no I/O, no
  clock, no Kubernetes or AWS imports. ``policy.decide`` takes time as an
  argument.
* I/O edges (metric sources, actuators, AWS plumbing) and the kopf wiring sit
  on top and translate their failures into :mod:`stackscaler.errors`.
"""

__version__ = "0.1.0"

API_GROUP = "stackscaler.dev"
API_VERSION = "v1alpha1"
"""The custom resources' group and version: ``stackscaler.dev/v1alpha1``."""
