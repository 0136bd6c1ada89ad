"""``make compose-check``: build the image, run the shipped docker-compose.yml, prove it serves, tear down.

Steps (each printed with its duration):
  1. engine     a running Docker engine: started here (and stopped at the end) when only installed;
                Debian's docker.io/docker-compose installed with apt when missing and this runs as root.
  2. images     the usual base image (python:3.11-slim) when it can be pulled; otherwise
                tandem-base:bookworm from Debian packages (debootstrap + docker import), var/wheelhouse
                from the host's pip, and docker/compose.debian.yml (redis/prometheus from Debian packages,
                Grafana left out).
  3. bundle     the default bundle built on the host (`tandem bundle build --default`, reused when
                current) and mounted read-only through docker/compose.check.yml.
  4. build, up  `compose build`, then `compose up -d` until every service's healthcheck passes.
  5. behaviour  recommendations and events through the API port; the worker consumes the events and
                the user's next answer is served from the vector it wrote; Prometheus has scraped the
                API's request counters.
  6. teardown   `compose down --volumes`; no container, network or volume of the project may remain.

Exit status 0 only when everything held. Built images stay (the next run's build cache).

Run by ``make compose-check`` (``python -m tools.compose_check``). One module per step: ``engine`` (1),
``images`` (2), ``bundle`` (3), ``stack`` (4, 6), ``behaviour`` (5); ``main`` runs them in order, ``shell``
holds what they share.
"""
