# pushgate: a multi-stage build to a small, non-root runtime image.
# Not built by this repository's CI (its machines have no container engine);
# kept conventional so any builder takes it:
#   docker build -t pushgate .
#   docker run -p 8080:8080 -e PUSHGATE_STORE__URL=postgres://... pushgate

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pushgate \
 && install -D target/release/pushgate /out/pushgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/pushgate --create-home pushgate
COPY --from=build /out/pushgate /usr/local/bin/pushgate
USER pushgate
WORKDIR /var/lib/pushgate
# Listen on every interface inside the container; the embedded store (the
# default) lives in the working directory: mount a volume there, or set
# PUSHGATE_STORE__URL to a PostgreSQL URL to run several containers.
ENV PUSHGATE_SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/pushgate"]
CMD ["serve"]
