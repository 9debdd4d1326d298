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
 && useradd --system --uid 10001 --home-dir /var/lib/castellan --create-home castellan \
 && install -d -o castellan -g castellan -m 0700 /var/lib/castellan/data /var/lib/castellan/secrets \
 && install -d -o castellan -g castellan -m 0755 /var/lib/castellan/ca
# The directories above exist in the image so that a named volume mounted on one starts out owned by
# the castellan user (Docker copies the image's directory, owner and mode included, into an empty named
# volume); a mount point missing from the image would be root's, and `castellan init` could not write.
COPY --from=build /src/target/release/castellan /usr/local/bin/castellan
USER castellan
WORKDIR /var/lib/castellan
ENV CASTELLAN_DATA_DIR=/var/lib/castellan/data
EXPOSE 8270
# Liveness over loopback, whether the API is served in plain HTTP or HTTPS ([tls]): the HTTPS probe talks
# to this container itself, so it does not check the certificate (compose checks it, with root.pem).
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8270/readyz || curl -fsSk https://127.0.0.1:8270/readyz || exit 1
ENTRYPOINT ["castellan"]
CMD ["serve", "--listen", "0.0.0.0:8270"]
