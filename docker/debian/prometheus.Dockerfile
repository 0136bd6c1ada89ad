# Prometheus from Debian's package, for machines that cannot pull prom/prometheus
# (docker/compose.debian.yml). Like the official image: the binary is the entrypoint, so the command of
# docker-compose.yml is its argument list, and the time series live under /prometheus.
ARG BASE_IMAGE=tandem-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus && chown prometheus /prometheus
WORKDIR /prometheus
USER prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml"]
