"""``stackscaler status``: what the resources' status says, for people and programs.

``view`` (pure) reads a resource into a typed view, ``render`` (pure) prints
it as text or JSON, ``source`` reads the resources from the Kubernetes API.
"""
