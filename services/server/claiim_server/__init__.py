"""The composition root of claiim's server side: the services wired to NATS and PostgreSQL
(:mod:`claiim_server.bootstrap`), the servers the embedded stack starts (:mod:`claiim_server.servers`),
the embedded stack itself (:mod:`claiim_server.stack`), supervised service processes
(:mod:`claiim_server.workers`) and the ``claiim`` command (:mod:`claiim_server.cli`)."""
