# Redis from Debian's package, for machines that cannot pull redis:7.2-alpine (docker/compose.debian.yml).
# Behaves like the official image for docker-compose.yml: the same command line, data in /data, and
# protected mode off (clients come from the compose network; the official image builds it that way).
ARG BASE_IMAGE=tandem-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && printf '#!/bin/sh\nexec /usr/bin/redis-server "$@" --protected-mode no\n' > /usr/local/bin/redis-server \
    && chmod 755 /usr/local/bin/redis-server \
    && mkdir -p /data && chown redis:redis /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server"]
