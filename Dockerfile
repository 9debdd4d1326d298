# Castellan: one static-ish binary on a small Debian base, running as a non-root user.
# Build:  docker build -t castellan .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p castellan && strip target/release/castellan

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/castellan --create-home castellan
COPY --from=build /src/target/release/castellan /usr/local/bin/castellan
USER castellan
WORKDIR /var/lib/castellan
ENV CASTELLAN_DATA_DIR=/var/lib/castellan/data
EXPOSE 8270
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8270/readyz || exit 1
ENTRYPOINT ["castellan"]
CMD ["serve", "--listen", "0.0.0.0:8270"]
