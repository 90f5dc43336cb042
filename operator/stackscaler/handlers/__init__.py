"""kopf wiring only: watches, operator settings, start-up and shut-down.

The only package that imports kopf. kopf is used for what it is best at
(watching with reconnects, peering between replicas); each resource's loop
is our own :class:`~stackscaler.scheduler.Scheduler`, so the operator adds no
finalizers and no annotations: it writes only ``status`` and Events, and
GitOps tools never see it change what they manage.
"""
