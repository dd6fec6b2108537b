"""The command lines: ``tmor-data`` (:mod:`tmor.cli.data`) and ``tmor-train``
(:mod:`tmor.cli.train`)."""
