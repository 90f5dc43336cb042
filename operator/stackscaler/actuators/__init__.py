"""Actuators (I/O): Auto Scaling groups, RDS replicas, ElastiCache, Kubernetes /scale."""

from stackscaler.actuators.base import Actuator, ApplyResult, Capacity

__all__ = ["Actuator", "ApplyResult", "Capacity"]
