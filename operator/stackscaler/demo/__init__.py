"""The live demo behind ``stackscaler demo`` / ``make demo``.

One command, no manual step: it builds the local control plane when missing
(Go), starts kube-apiserver + etcd, moto (the AWS stand-in) and the operator
(``stackscaler run``, a subprocess logging to a file), applies
``examples/stack.yaml`` with a few demo overrides, and replays launch day at
NASA (13 July 1995, from the embedded NASA-HTTP trace, scaled up) against
it with a load generator, printing a live table per tier and a summary, and
drawing a picture of the story. It stops everything it started, whatever
happens. Fake AWS credentials exist only in the children's environment;
everything listens on loopback.

Modules (pure ones do no I/O and read no clock):

* :mod:`~stackscaler.demo.story` (pure): the story's demand and clock;
* :mod:`~stackscaler.demo.stack` (pure): the demo overrides of the stack,
  each listed for people, and the facts the demo needs from it;
* :mod:`~stackscaler.demo.load` (pure): the load model (CPU, queue, replica
  and cache load from demand and capacity) and the summary's tallies;
* :mod:`~stackscaler.demo.table` (pure): the live table and the summary;
* :mod:`~stackscaler.demo.timeline` (pure): the story as recorded (bounded)
  and the picture drawn from it at the end;
* :mod:`~stackscaler.demo.processes`, :mod:`~stackscaler.demo.aws`,
  :mod:`~stackscaler.demo.cluster`: the child processes, moto and the
  control plane as the demo drives them;
* :mod:`~stackscaler.demo.live`: the orchestration (setup, the story on an
  event loop, teardown, summary).

The operator never imports this package.
"""
